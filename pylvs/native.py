"""Picks the implementation of the hot functions: the C extension or the pure twins.

There is no C extension yet (it is issue #4); until then the pure twins run and
``IMPLEMENTATION`` says so — never a silent slow fallback.
"""

from __future__ import annotations

import os

from pylvs._pure import checksum as _pure_checksum

IMPLEMENTATION = "pure"
REASON = "pylvs._native is not built yet (pure-Python twins)"

if os.environ.get("PYLVS_REQUIRE_NATIVE") == "1":  # pragma: no cover - until native exists
    raise ImportError("PYLVS_REQUIRE_NATIVE=1 but " + REASON)

checksum = _pure_checksum.checksum
csum_partial = _pure_checksum.csum_partial
csum_fold = _pure_checksum.csum_fold
pseudo_header_sum = _pure_checksum.pseudo_header_sum
csum_replace2 = _pure_checksum.csum_replace2
csum_replace4 = _pure_checksum.csum_replace4
csum_replace_bytes = _pure_checksum.csum_replace_bytes
