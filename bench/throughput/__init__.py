"""The parts of bench/bench_throughput.py: the lab's addresses and services, shared by the modules below.

- peers.py: the peers' Debian packages, versions, and the configurations of every balancer and server;
- lab.py: reading the lab's namespaces (interface counters, listening sockets);
- loads.py: the loads (iperf3, wrk, trafgen, the latency client, the idle flows) and the counters they read;
- balancer.py: one balancer in one fresh lab, every figure taken;
- report.py: the table, the ratios and the targets.
"""

from __future__ import annotations

import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_throughput.py"  # the entry point; its ``_latency`` runs the latency client

VIP = "198.18.0.100"
CLIENT_IP = "198.18.0.10"
CLIENT_MAC = "02:00:00:00:00:10"
DIRECTOR_MAC0 = "02:00:00:00:01:01"  # the director's client-side MAC in the lab (examples/*.toml)
DIP = "198.19.0.1"
LIP = "198.19.0.250"
RIPS = ("198.19.0.11", "198.19.0.12")
PORT_IPERF, PORT_HTTP, PORT_SMALL, PORT_IDLE = 5201, 8081, 9, 10
IDLE_NET = (198 << 24) | (18 << 16) | (128 << 8)  # 198.18.128.0/17: sources of the idle flows
IDLE_PORTS = 64000  # source ports 1024..65023 per idle source address

TOOLS = {"nft": "nftables", "haproxy": "haproxy", "iperf3": "iperf3", "wrk": "wrk", "nginx": "nginx-light",
         "trafgen": "netsniff-ng"}
SYSTEMS = (  # (key, column title, lab mode)
    ("kernel", "nft DNAT", "nat"),
    ("haproxy", "HAProxy", "nat"),
    ("nat", "pylvs NAT", "nat"),
    ("dr", "pylvs DR", "dr"),
    ("fullnat", "pylvs FULLNAT", "fullnat"),
)
PYLVS_MODES = ("nat", "dr", "fullnat")


class Durations:
    def __init__(self, quick: bool, small_pps: int, lat_rate: int) -> None:
        self.quick = quick
        self.bulk = 2 if quick else 5           # s per iperf3 run
        self.wrk = 2 if quick else 5            # s
        self.small = 1.0 if quick else 3.0      # s of 64-byte frames at small_pps
        self.small_pps = small_pps
        self.lat_rate = lat_rate                # requests/s
        self.lat = 1.0 if quick else 4.0        # s
        self.fill_timeout = 60.0 if quick else 150.0
        self.settle = 0.5 if quick else 1.0
        self.offloads = True                    # the kernel's TSO/GSO/GRO on the traffic sources
        self.rps = False                        # --rps: balancer on CPU 0, peers' receive softirqs on CPU 1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
