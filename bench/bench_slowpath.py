#!/usr/bin/env python3
"""New-connection cost through the Python slow path (``Director.handle``), NAT and FULLNAT.

    python bench/bench_slowpath.py [--conns 3000] [--repeat 3] [--impl native,pure] [--profile]

Each connection is a short HTTP/1.0-style exchange, as wrk with ``Connection: close`` makes:

    C->V SYN, R->C SYN-ACK, C->V ACK (handshake done; FULLNAT puts TOA in it), C->V request,
    R->C response, R->C FIN, C->V ACK, C->V FIN, R->C ACK

nine frames, all through ``Director.handle``: the cost of the Python slow path per frame.  Live, only
the SYN of such a connection takes it now (the handshake's SYN-ACK and ACK, FULLNAT's TOA, the request,
the response and the teardown go through the C fast path).  The frames are made once,
untimed: a first Director forwards them and the servers' answers are built from what it sent; a fresh
Director with the same configuration then gets the same frames (the scheduler and the FULLNAT port
cursor are deterministic, so it makes the same choices; its output is checked byte for byte against the
first run's).  The simulated clock advances ``--gap`` seconds per connection, so with the defaults the
TIME_WAIT entries (120 s) of the early connections expire while later ones arrive, as in a steady state.

Prints µs per frame through ``handle`` and connections/s (1 / the nine frames' time), best of
``--repeat`` runs, for the C checksums/flow table and for their pure twins.  ``--profile`` prints a
cProfile of one NAT and one FULLNAT run instead.  Figures, not pass/fail: the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pathlib
import pstats
import sys
import time

import dpkt

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pylvs import native  # noqa: E402
from pylvs.config import load_config  # noqa: E402
from pylvs.core.pipeline import Director, Send  # noqa: E402
from pylvs.testing import tcp_frame  # noqa: E402

C_MAC, D0_MAC, D1_MAC = "02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02"
CIP, VIP = "198.18.0.10", "198.18.0.100"
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10

# Linux-like options: SYN (MSS, SACK-permitted, timestamps, NOP, window scale), later segments (NOP NOP TS).
_TS = b"\x08\x0a" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00"
SYN_OPTS = b"\x02\x04\x05\xb4" + b"\x04\x02" + _TS + b"\x01\x03\x03\x07"
ACK_OPTS = b"\x01\x01" + _TS
REQUEST = b"GET / HTTP/1.1\r\nHost: 198.18.0.100\r\nConnection: close\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nhello, world\n"
PER_CONN = 9


def _sent(actions) -> bytes:
    (s,) = [a for a in actions if isinstance(a, Send)]
    return s.frame


class _Flow:
    """The server's view of a flow, learned from the director's forwarded SYN."""

    def __init__(self, fwd: bytes) -> None:
        e = dpkt.ethernet.Ethernet(fwd)
        ip, tcp = e.data, e.data.data
        self.rs_mac, self.src, self.dst = e.dst, dpkt.utils.inet_to_str(ip.dst), dpkt.utils.inet_to_str(ip.src)
        self.sport, self.dport = tcp.dport, tcp.sport

    def frame(self, flags: int, seq: int, ack: int, payload: bytes = b"", opts: bytes = ACK_OPTS) -> bytes:
        return tcp_frame(self.rs_mac, D1_MAC, self.src, self.dst, self.sport, self.dport, flags, seq=seq,
                         ack=ack, payload=payload, opts=opts)


def workload(mode: str, conns: int, gap: float) -> tuple[list[tuple[bytes, str, float]], list[list]]:
    """The frames of ``conns`` connections (with iface and time) and what a Director answers to each."""
    d = Director(load_config(ROOT / "examples" / f"{mode}.toml"))
    frames: list[tuple[bytes, str, float]] = []
    outs: list[list] = []

    def go(frame: bytes, iface: str, now: float):
        frames.append((frame, iface, now))
        out = d.handle(frame, iface, now)
        outs.append(out)
        return out

    def client(cport: int, flags: int, seq: int, ack: int, payload: bytes = b"", opts: bytes = ACK_OPTS) -> bytes:
        return tcp_frame(C_MAC, D0_MAC, CIP, VIP, cport, 80, flags, seq=seq, ack=ack, payload=payload, opts=opts)

    now = 1.0
    for i in range(conns):
        cport = 10000 + i % 50000
        now += gap
        cs, ss = 1000, 5000  # client and server initial sequence numbers
        rs = _Flow(_sent(go(client(cport, SYN, cs, 0, opts=SYN_OPTS), "eth0", now)))
        go(rs.frame(SYN | ACK, ss, cs + 1, opts=SYN_OPTS), "eth1", now)
        go(client(cport, ACK, cs + 1, ss + 1), "eth0", now)
        go(client(cport, PSH | ACK, cs + 1, ss + 1, REQUEST), "eth0", now)
        go(rs.frame(PSH | ACK, ss + 1, cs + 1 + len(REQUEST), RESPONSE), "eth1", now)
        go(rs.frame(FIN | ACK, ss + 1 + len(RESPONSE), cs + 1 + len(REQUEST)), "eth1", now)
        go(client(cport, ACK, cs + 1 + len(REQUEST), ss + 2 + len(RESPONSE)), "eth0", now)
        go(client(cport, FIN | ACK, cs + 1 + len(REQUEST), ss + 2 + len(RESPONSE)), "eth0", now)
        go(rs.frame(ACK, ss + 2 + len(RESPONSE), cs + 2 + len(REQUEST)), "eth1", now)
    assert not d.drops, f"{mode}: the workload itself drops frames: {dict(d.drops)}"
    return frames, outs


def run(mode: str, frames, outs=None) -> float:
    """Seconds for a fresh Director to handle ``frames`` (checked against ``outs`` afterwards)."""
    d = Director(load_config(ROOT / "examples" / f"{mode}.toml"))
    handle = d.handle
    results = []
    add = results.append
    gc.collect()
    t0 = time.perf_counter()
    for frame, iface, now in frames:
        add(handle(frame, iface, now))
    took = time.perf_counter() - t0
    if outs is not None and results != outs:
        bad = next(i for i, (a, b) in enumerate(zip(results, outs)) if a != b)
        raise AssertionError(f"{mode}: frame {bad} answered differently from the first run")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=3000, help="connections per run (9 frames each)")
    ap.add_argument("--gap", type=float, default=0.1, help="simulated seconds between connections")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is shown")
    ap.add_argument("--impl", default=",".join(["native", "pure"] if native.available() else ["pure"]),
                    help="implementations to measure, comma-separated (native, pure)")
    ap.add_argument("--modes", default="nat,fullnat")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one run per mode instead")
    args = ap.parse_args()
    modes = args.modes.split(",")
    saved = native.IMPLEMENTATION, native.REASON
    try:
        if args.profile:
            native.use(args.impl.split(",")[0])
            for mode in modes:
                frames, _ = workload(mode, args.conns, args.gap)
                pr = cProfile.Profile()
                pr.enable()
                run(mode, frames)
                pr.disable()
                print(f"== {mode} ({native.IMPLEMENTATION}), {len(frames)} frames")
                pstats.Stats(pr).sort_stats("tottime").print_stats(25)
            return
        print(f"{args.conns} connections x {PER_CONN} frames per run, best of {args.repeat}; "
              f"Python {sys.version.split()[0]}")
        print(f"{'mode':<8} {'impl':<7} {'us/frame':>9} {'conns/s':>9}")
        # The frames and answers do not depend on the implementation (the differential tests hold the
        # two together; the byte-for-byte check below would say otherwise): made once per mode.
        loads = {mode: workload(mode, args.conns, args.gap) for mode in modes}
        for impl in args.impl.split(","):
            native.use(impl)
            for mode in modes:
                frames, outs = loads[mode]
                best = min(run(mode, frames, outs) for _ in range(args.repeat))
                per = best / len(frames)
                print(f"{mode:<8} {impl:<7} {per * 1e6:>9.2f} {args.conns / best:>9.0f}")
    finally:
        native.use(*saved)


if __name__ == "__main__":
    main()
