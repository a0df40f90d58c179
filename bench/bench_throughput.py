"""pylvs against its peers on this machine: bulk TCP, new connections/s, 64-byte UDP rate, latency, CPU.

    sudo python bench/bench_throughput.py [--quick] [--idle-flows N]

One run, one table.  For each load balancer, in a fresh namespace lab (pylvs/lab/netns.py: client, director,
a router for DR's return path, 2 real servers, veth pairs on two bridges in a switch namespace; names carry a
random suffix; addresses only from 198.18.0.0/15; all of it removed at the end, on failure or Ctrl-C too):

- **kernel nft DNAT**: the director namespace routes (ip_forward=1) and an nftables ``dnat to`` map spreads the
  VIP's ports over the 2 servers (conntrack un-NATs the replies): the kernel's own forwarding fast path;
- **HAProxy** ``mode tcp`` listening on the VIP (roundrobin for HTTP);
- **pylvs** NAT, DR and FULLNAT: ``pylvs run --config <generated toml> --host-setup`` with driver afpacket,
  the shapes of examples/nat.toml, dr.toml and fullnat.toml (same addresses, LIP, TOA, static neighbours).

Services on the VIP 198.18.0.100 (the same for every balancer):

- 5201/tcp -> iperf3 servers on both real servers.  iperf3's control and data connections of one test must
  reach the same server, so this service has client affinity everywhere: pylvs ``persistence_timeout``,
  nft ``jhash ip saddr``, HAProxy ``balance source`` (with one client, one server takes each test);
- 8081/tcp -> nginx on both real servers (round robin: nft ``numgen inc``, HAProxy ``roundrobin``, pylvs rr);
- 9/udp -> counted and dropped by an nftables rule at the top of each server's prerouting (no reply, no
  ICMP): the 64-byte packet rate delivered to the servers (HAProxy has no UDP: n/a);
- 10/udp -> the same, for the idle flows of ``--idle-flows``.

Measured per balancer (each figure one run; this 2-core machine is shared by the load generators, the
balancer and the servers, so the ratios measured in the same run are what to read, not the absolute figures):

- bulk TCP Gb/s, iperf3 client -> server through the balancer, 1 stream and ``-P 4``;
- latency p50/p99 of short HTTP requests, one new connection each, at a fixed rate (a bounded asyncio client
  in throughput/loads.py, open loop: latency counts from each request's scheduled start, so a stall is not
  hidden);
- 64-byte UDP frames (60 bytes + FCS) over 64 flows from trafgen (one process, one CPU), counted at the
  servers: first paced at a fixed rate (``--pps``, 400 kpps: what one trafgen CPU sustains here in every
  setup, as for the kernel the forwarding runs in the sender's own softirq), then the same count unpaced (as
  fast as trafgen sends: where the forwarder, not the sender, sets the pace).  Falls back to a paced
  AF_PACKET socket (throughput/loads.py) if trafgen cannot run, and says so;
- new connections/s: wrk, 2 threads, 32 connections, ``Connection: close``, against nginx;
- the balancer process's CPU per forwarded packet (utime+stime from /proc/PID/stat over the load, divided by
  frames: for pylvs those the director's interfaces transmitted, i.e. what it forwarded; for HAProxy those
  they received, as its own sends leave as TSO super-frames), with how busy the process was and how much of
  it was kernel time; n/a for the kernel's DNAT (softirq, no process).

``--idle-flows N``: after pylvs NAT's own measurements, N single-packet UDP flows from distinct source
addresses and ports (198.18.128.0/17) are sent to 10/udp, paced by what pylvs forwards (the servers drop
them).  Each one creates a connection in pylvs's table and an entry in the C fast path's flow table (a UDP flow
is installed there at its first packet, so the fast path's lookups meet a full table; the idle timeout is
300 s, longer than the run), then bulk and 64-byte figures are taken again next to the
empty-table ones, in the same pylvs process.  The fill is bounded in time; if it cannot reach N, the output
says how far it got and why.

Offloads: every veth keeps the kernel's defaults (TSO/GSO on the traffic sources, so a veth hands its peer
whole 64 KB super-frames, as on any VM or container host): the kernel's DNAT forwards them whole, HAProxy
receives them whole, and pylvs takes them whole with PACKET_VNET_HDR and hands them back whole (its
--host-setup only turns LRO off).  ``--no-offloads`` turns TSO/GSO/GRO off on the traffic sources instead (the
lab's default: wire-sized frames everywhere).  Every load is bounded in time and count.

``--rps`` (a diagnostic, not the headline): on one machine, what pylvs sends into a veth is received by its
peers' network stacks inside pylvs's own send calls (veth delivers with netif_rx; the softirq runs on the way
out of the sender's system call), so the single-threaded balancer pays for its peers' stacks, where separate
hosts would pay for their own.  ``--rps`` pins the balancer process to CPU 0 and steers the peers' veth receive
processing to CPU 1 (RPS), for every balancer alike.

Targets (from the issue; report only, exit 0 when the measurements ran): bulk TCP through FULLNAT and NAT
>= 0.6x nft DNAT and >= 1.0x HAProxy; new connections/s >= 0.9x nft; 64-byte delivered rate >= 0.8x nft;
with the idle flows, bulk and 64-byte figures within 10% of the empty table.

The parts live in the package bench/throughput/ (addresses and services in its __init__.py, peers.py, lab.py,
loads.py, balancer.py, report.py); this file parses the arguments, runs the balancers one after the other and
prints the report.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Every child (pylvs itself, the lab's servers) imports pylvs from this same tree.
os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
if str(ROOT / "bench") not in sys.path:  # bench/throughput/ when this file is not run as a script
    sys.path.insert(1, str(ROOT / "bench"))

from throughput import PYLVS_MODES, SYSTEMS, TOOLS, Durations, log  # noqa: E402
from throughput.balancer import Run  # noqa: E402
from throughput.loads import Small, latency_cli  # noqa: E402
from throughput.peers import ensure_tools, versions  # noqa: E402
from throughput.report import report  # noqa: E402


# ------------------------------------------------------------------------------------------ main

def main(argv: list[str]) -> int:
    if argv[:1] == ["_latency"]:
        return latency_cli(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke run)")
    ap.add_argument("--idle-flows", type=int, default=0, metavar="N",
                    help="also measure pylvs NAT with N idle flows in its table (e.g. 1000000)")
    ap.add_argument("--pps", type=int, default=400_000,
                    help="paced 64-byte rate (default 400000: what one trafgen CPU sustains here in every setup)")
    ap.add_argument("--latency-rate", type=int, default=300, help="requests/s of the latency run (default 300)")
    ap.add_argument("--no-offloads", action="store_true",
                    help="TSO/GSO/GRO off on the traffic sources: wire-sized frames only, for every balancer")
    ap.add_argument("--rps", action="store_true",
                    help="pin the balancer process to CPU 0 and steer its peers' veth receive processing to CPU 1")
    ap.add_argument("--only", action="append", choices=[k for k, _, _ in SYSTEMS],
                    help="run only these balancers (repeatable)")
    a = ap.parse_args(argv)
    if a.idle_flows < 0 or a.idle_flows > 8_000_000:
        ap.error("--idle-flows must be 0..8000000")

    main_pid = os.getpid()

    def on_term(signum, frame):  # SIGTERM tears the lab down like Ctrl-C
        if os.getpid() != main_pid:  # a forked helper (pyroute2's netns workers): die as by default
            os._exit(128 + signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    from pylvs.lab.netns import LabError, have_netadmin
    reason = have_netadmin()
    if reason:
        print(f"bench_throughput: cannot build network namespaces here: {reason}", file=sys.stderr)
        return 3
    t_start = time.monotonic()
    notes = ensure_tools()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    head = versions()
    if missing:
        notes.append(f"still missing after apt-get: {', '.join(missing)} (their figures will be n/a)")
    d = Durations(a.quick, a.pps, a.latency_rate)
    d.offloads = not a.no_offloads
    d.rps = a.rps
    notes.append("offloads: " + ("kernel defaults on every veth (TSO/GSO super-frames from the sources)" if d.offloads
                                 else "TSO/GSO/GRO off on the traffic sources (--no-offloads)"))
    max_conn = 1 << 20
    while max_conn < a.idle_flows + 262_144:
        max_conn <<= 1
    if max_conn != 1 << 20:
        notes.append(f"pylvs [table] max_connections = {max_conn} in every pylvs run (room for the idle flows)")
    runs: dict[str, Run] = {}
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="pylvs-bench-") as tmpdir:
        small = Small(tmpdir)
        try:
            for key, title, lab_mode in SYSTEMS:
                if a.only and key not in a.only:
                    continue
                wd = pathlib.Path(tmpdir) / key
                wd.mkdir()
                run = Run(key, lab_mode, d, small, wd, a.idle_flows, max_conn)
                runs[key] = run
                log(f"== {title}")
                try:
                    run.execute()
                except (LabError, RuntimeError, OSError, subprocess.SubprocessError) as e:
                    run.notes.append(f"FAILED: {type(e).__name__}: {str(e)[-1500:]}")
                    log(f"{title} failed: {e}")
                if key in PYLVS_MODES and getattr(run, "pylvs_log", ""):
                    bad = [ln for ln in run.pylvs_log.splitlines()
                           if re.search(r"\b(ERROR|WARNING|Traceback|CRITICAL)\b", ln)]
                    if bad:
                        run.notes.append(f"pylvs log: {len(bad)} warning/error lines, e.g. {bad[0][:200]}")
        except KeyboardInterrupt:
            interrupted = True
            print("\nbench_throughput: interrupted; lab torn down", file=sys.stderr)
    if interrupted:
        notes.append("INTERRUPTED: figures below are those taken before the interruption")
    if small.note:
        notes.append(small.note)
    notes.append(f"total wall time {time.monotonic() - t_start:.0f} s")
    print(report(runs, d, a.idle_flows, head, notes), flush=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
