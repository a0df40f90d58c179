#!/usr/bin/env python3
"""Regenerate examples/captures/<mode>.pcap: what a director's links carry when a
client talks TCP and UDP to the VIP and the servers answer (see pylvs.labscript).

    python examples/make_captures.py
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pylvs.capture_gen import write_capture  # noqa: E402

for mode in ("nat", "dr", "tun", "fullnat"):
    out = HERE / "captures" / f"{mode}.pcap"
    n = write_capture(HERE / f"{mode}.toml", out)
    print(f"{out.relative_to(HERE.parent)}: {n} frames")
