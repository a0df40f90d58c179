"""Picks the implementation of the hot functions: the C extension ``pylvs._native`` or the pure twins.

Never a silent slow fallback: ``IMPLEMENTATION`` ("native" or "pure") and ``REASON`` say which runs and
why; ``pylvs --version``, the start log and the stats print them.

- ``PYLVS_NO_NATIVE=1`` forces the pure-Python twins;
- ``PYLVS_REQUIRE_NATIVE=1`` makes a missing or broken extension an ImportError (benchmarks, CI);
- :func:`use` switches at run time (the test suite runs once per implementation).  Code that wants to follow
  a switch calls through the module (``native.checksum(...)``) rather than importing the names.
"""

from __future__ import annotations

import os

from pylvs._pure import checksum as _pure_checksum
from pylvs._pure import flowtable as _pure_flowtable
from pylvs._pure import io as _pure_io
from pylvs._pure import offload as _pure_offload
from pylvs._pure import siphash as _pure_siphash

NAMES = ("checksum", "csum_partial", "csum_fold", "pseudo_header_sum", "csum_replace2", "csum_replace4",
         "csum_replace_bytes", "complete_checksum", "siphash13", "siphash24", "FlowTable", "DESC_SIZE", "ENTRY_SIZE",
         "MAX_INTERFACES", "rx_afpacket", "rx_tap", "tx_run", "send_frames", "vnet_to_desc", "desc_to_vnet",
         "gso_segment")

_PURE = {n: getattr(m, n)
         for m in (_pure_checksum, _pure_flowtable, _pure_siphash, _pure_io, _pure_offload) for n in NAMES
         if hasattr(m, n)}

try:
    from pylvs import _native as _c
    _NATIVE = {n: getattr(_c, n) for n in NAMES}
    _IMPORT_ERROR = ""
except ImportError as e:  # not built (no compiler at install time) or unloadable
    _NATIVE = None
    _IMPORT_ERROR = str(e)

IMPLEMENTATION = "pure"
REASON = ""


def available() -> bool:
    """Is the C extension importable?"""
    return _NATIVE is not None


def use(impl: str, reason: str = "") -> None:
    """Bind this module's functions to ``impl`` ("native" or "pure")."""
    global IMPLEMENTATION, REASON
    if impl == "native":
        if _NATIVE is None:
            raise ImportError(f"pylvs._native is not available: {_IMPORT_ERROR}")
        table = _NATIVE
    elif impl == "pure":
        table = _PURE
    else:
        raise ValueError(f"unknown implementation {impl!r} (native or pure)")
    globals().update(table)
    IMPLEMENTATION = impl
    REASON = reason or ("C extension pylvs._native" if impl == "native" else "pure-Python twins")


def _initial() -> None:
    if os.environ.get("PYLVS_NO_NATIVE") == "1":
        use("pure", "PYLVS_NO_NATIVE=1: pure-Python twins")
    elif _NATIVE is not None:
        use("native")
    elif os.environ.get("PYLVS_REQUIRE_NATIVE") == "1":
        raise ImportError(f"PYLVS_REQUIRE_NATIVE=1 but pylvs._native is not available: {_IMPORT_ERROR}")
    else:
        use("pure", f"pylvs._native is not available ({_IMPORT_ERROR}): pure-Python twins, much slower")


_initial()
