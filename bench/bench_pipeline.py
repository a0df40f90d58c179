#!/usr/bin/env python3
"""Established-flow cost through the Director, per mode: the slow path and the batched fast path.

    python bench/bench_pipeline.py [--packets 20000]

Prints ns/packet for 64-byte and 1500-byte frames of an established TCP flow (client → server
direction) through ``Director.handle`` (the Python slow path, one frame per call) and through
``Director.handle_batch`` (batches of 32, the live runner's entry point: the fast path plus Python's
once-per-batch work), the latter with the C extension and with its pure twins, in one run.
bench/bench_native.py measures the C fast path alone.  Figures, not pass/fail: the machine is shared,
so compare runs side by side.
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
from pylvs.core.batch import Batch  # noqa: E402
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


def frame_for(size: int, cport: int, seq: int = 2) -> bytes:
    payload = b"x" * max(0, size - 14 - 20 - 20)
    return tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", cport, 80, 0x10, seq=seq, ack=10, payload=payload)


def bench(mode: str, size: int, n: int) -> float:
    d, cport = established(mode)
    frame = frame_for(size, cport)
    handle = d.handle
    t0 = time.perf_counter_ns()
    for i in range(n):
        handle(frame, "eth0", 2.0)
    return (time.perf_counter_ns() - t0) / n


def bench_batch(mode: str, size: int, n: int, impl: str, batch: int = 32) -> float:
    saved = native.IMPLEMENTATION, native.REASON
    native.use(impl)
    try:
        d, cport = established(mode)
        b = Batch(size=batch, frame_room=1600)
        for i in range(batch):
            b.add(frame_for(size, cport, seq=2 + i))
        buf0, desc0 = bytes(b.buf), bytes(b.desc)
        rounds = max(1, n // batch)
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            b.buf[:] = buf0
            b.desc[:] = desc0
        restore = time.perf_counter_ns() - t0
        hb = d.handle_batch
        punted = 0
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            b.buf[:] = buf0
            b.desc[:] = desc0
            punted += len(hb(b.buf, b.desc, batch, "eth0", 2.0))
        took = time.perf_counter_ns() - t0 - restore
        assert not punted, f"{mode}: {punted} frames punted: the figure would not be the fast path"
        return took / (rounds * batch)
    finally:
        native.use(*saved)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    args = ap.parse_args()
    print(f"{args.packets} packets per cell; handle (slow): {native.IMPLEMENTATION} checksums; handle_batch: "
          "batches of 32, the batch restore not counted")
    impls = ["native", "pure"] if native.available() else ["pure"]
    cols = "".join(f"{'batch ' + i:>16}" for i in impls)
    print(f"{'mode':<8} {'frame':>6} {'handle (slow)':>14}{cols}   (ns/packet)")
    for mode in ("nat", "dr", "tun", "fullnat"):
        for size in (64, 1500):
            if mode == "tun" and size == 1500:
                size = 1480  # room for the 20-byte outer header in a 1500-byte MTU (else: frag-needed)
            slow = bench(mode, size, args.packets)
            fast = [bench_batch(mode, size, args.packets if i == "native" else args.packets // 4, i) for i in impls]
            print(f"{mode:<8} {size:>6} {slow:>14.0f}" + "".join(f"{f:>16.0f}" for f in fast))


if __name__ == "__main__":
    main()
