#!/usr/bin/env python3
"""What a big connection table costs outside the packet path: memory per flow, and how long ``ctl conns``
stops the datapath.

    python bench/bench_control.py [--flows 300000]

Fills a Director (examples/nat.toml without its health checks, in process, no network) with single-packet
UDP flows through ``Director.handle``, then prints:

- the process's RSS growth per flow (the Python connection, its table entries and the C fast path's entry);
- ``ctl conns`` over the real control socket (a Unix socket in a temporary folder) while a task on the same
  event loop stands in for the datapath: the longest time that task could not run, with the answer streamed
  in chunks (what pylvs does) and, for comparison, rendered and encoded in one go as before
  (``ControlPlane.handle`` + ``json.dumps`` on the loop).

Figures, not pass/fail: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import pathlib
import sys
import tempfile
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pylvs import native  # noqa: E402
from pylvs.config import parse_config  # noqa: E402
from pylvs.control import ctlcli  # noqa: E402
from pylvs.control.plane import ControlPlane  # noqa: E402
from pylvs.core.pipeline import Director  # noqa: E402
from pylvs.testing import udp_frame  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def director(flows: int) -> Director:
    doc = tomllib.loads((ROOT / "examples" / "nat.toml").read_text())
    for vs in doc["virtual_server"]:
        vs.pop("health_check", None)  # nothing here may send anything anywhere
    doc.setdefault("table", {})["max_connections"] = max(flows + 1024, 1 << 20)
    return Director(parse_config(doc, "nat.toml without health checks"))


async def longest_stall(cp: ControlPlane, streamed: bool) -> tuple[int, float, float]:
    """(rows, seconds, longest gap between two turns of a task on the loop) for one ``ctl conns``."""
    loop = asyncio.get_running_loop()
    if streamed:
        fut = loop.run_in_executor(None, ctlcli.request, cp.ctl_socket, {"cmd": "conns"}, 300.0)
    else:  # the old way: the whole answer made and encoded in one synchronous step on the loop
        async def one_go():
            await asyncio.sleep(0.05)
            return {"result": json.loads(json.dumps(cp.handle({"cmd": "conns"}), default=str))["result"]}
        fut = asyncio.ensure_future(one_go())
    t0 = last = time.perf_counter()
    worst = 0.0
    while not fut.done():
        await asyncio.sleep(0)
        now = time.perf_counter()
        worst, last = max(worst, now - last), now
    ans = await fut
    return len(ans["result"]), time.perf_counter() - t0, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=300_000)
    args = ap.parse_args()
    n = args.flows
    frames = [udp_frame("02:00:00:00:00:10", "02:00:00:00:01:01",
                        f"198.18.{128 + (i >> 16) % 64}.{(i >> 8) & 255}", "198.18.0.100", 1024 + (i & 255), 53,
                        b"x") for i in range(n)]
    d = director(n)
    gc.collect()
    r0, t = rss(), time.perf_counter()
    for f in frames:
        d.handle(f, "eth0", 1.0)
    fill = time.perf_counter() - t
    gc.collect()
    per_flow = (rss() - r0) / len(d.table)
    print(f"{len(d.table)} flows ({native.IMPLEMENTATION}) made in {fill:.1f} s; RSS growth {per_flow:.0f} B/flow "
          f"(C fast path: {d.fast.stats()['bytes_per_flow']} B/flow of that)")

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cp = ControlPlane(d, config_path=None, ctl_socket=f"{tmp}/ctl.sock", metrics="",
                              clock=lambda: 2.0)
            await cp.start()
            try:
                for streamed in (True, False):
                    rows, secs, worst = await longest_stall(cp, streamed)
                    how = "streamed in chunks (pylvs)" if streamed else "rendered in one go (before)"
                    print(f"ctl conns, {how:28}: {rows} rows in {secs:.1f} s, longest datapath stall "
                          f"{worst * 1e3:.0f} ms")
            finally:
                await cp.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()
