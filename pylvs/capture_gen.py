"""Write the example capture for a config: the director's input frames, in order."""

from __future__ import annotations

import os

from pylvs.config import load_config
from pylvs.core.pipeline import Director
from pylvs.io.pcap import PcapWriter
from pylvs.labscript import record


def write_capture(config_path: str | os.PathLike, out_path: str | os.PathLike) -> int:
    rec = record(Director(load_config(config_path)))
    os.makedirs(os.path.dirname(os.fspath(out_path)) or ".", exist_ok=True)
    with open(out_path, "wb") as f:
        w = PcapWriter(f)
        for ts, _ifname, frame in rec.inputs:
            w.write(frame, ts)
    return len(rec.inputs)
