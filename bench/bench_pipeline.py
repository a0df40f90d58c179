#!/usr/bin/env python3
"""Established-flow throughput of the pure-Python datapath, per mode.

    python bench/bench_pipeline.py [--packets 20000]

Prints ns/packet and packets/s for 64-byte and 1500-byte frames through
``Director.handle`` on an established TCP flow (client → server direction).
Figures, not pass/fail: the machine is shared, so compare runs side by side.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import dpkt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pylvs import native  # noqa: E402
from pylvs.config import load_config  # noqa: E402
from pylvs.core.pipeline import Director, Send  # noqa: E402
from pylvs.testing import tcp_frame  # noqa: E402

C, D0, D1 = "02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02"


def established(mode: str) -> tuple[Director, int]:
    d = Director(load_config(ROOT / "examples" / f"{mode}.toml"))
    t = 1.0
    out = d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 40000, 80, 0x02, seq=1), "eth0", t)
    fwd = [a for a in out if isinstance(a, Send)][0].frame
    if mode in ("nat", "fullnat"):
        # the server's SYN-ACK back through the director
        ip = dpkt.ethernet.Ethernet(fwd).data
        tcp = ip.data
        d.handle(tcp_frame(dpkt.ethernet.Ethernet(fwd).dst, D1, dpkt.utils.inet_to_str(ip.dst),
                           dpkt.utils.inet_to_str(ip.src), tcp.dport, tcp.sport, 0x12, seq=9, ack=2), "eth1", t)
    d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 40000, 80, 0x10, seq=2, ack=10), "eth0", t)
    return d, 40000


def bench(mode: str, size: int, n: int) -> float:
    d, cport = established(mode)
    payload = b"x" * max(0, size - 14 - 20 - 20)
    frame = tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", cport, 80, 0x10, seq=2, ack=10, payload=payload)
    handle = d.handle
    t0 = time.perf_counter_ns()
    for i in range(n):
        handle(frame, "eth0", 2.0)
    return (time.perf_counter_ns() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    args = ap.parse_args()
    print(f"implementation: {native.IMPLEMENTATION} ({native.REASON}); {args.packets} packets per cell")
    print(f"{'mode':<8} {'frame':>6} {'ns/pkt':>10} {'pkts/s':>10}")
    for mode in ("nat", "dr", "tun", "fullnat"):
        for size in (64, 1500):
            ns = bench(mode, size, args.packets)
            print(f"{mode:<8} {size:>6} {ns:>10.0f} {1e9 / ns:>10.0f}")


if __name__ == "__main__":
    main()
