"""The loads (iperf3, wrk, trafgen or its fallback, the latency client, the idle flows) and the counters they read."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import socket
import struct
import sys
import time
from collections import Counter

from . import (CLIENT_IP, CLIENT_MAC, DIRECTOR_MAC0, IDLE_NET, IDLE_PORTS, PORT_HTTP, PORT_IDLE, PORT_IPERF,
               PORT_SMALL, SCRIPT, VIP)
from .lab import netdev, tx_total


# ------------------------------------------------------------------------------------------ counters

def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid``, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return float("nan")


def nft_counter(lab, role: str, name: str) -> int:
    r = lab.run(role, ["nft", "-j", "list", "counter", "inet", "bench_rs", name], timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"nft counter {name} in {role}: {r.stderr.strip()}")
    for obj in json.loads(r.stdout)["nftables"]:
        if "counter" in obj:
            return int(obj["counter"]["packets"])
    return 0


def rs_count(lab, name: str) -> tuple[int, ...]:
    return tuple(nft_counter(lab, f"rs{n}", name) for n in (1, 2))


# ------------------------------------------------------------------------------------------ loads

def run_iperf(lab, secs: int, streams: int) -> dict:
    argv = ["iperf3", "-c", VIP, "-p", str(PORT_IPERF), "-t", str(secs), "-J", "--connect-timeout", "3000"]
    if streams > 1:
        argv += ["-P", str(streams)]
    r = lab.run("client", argv, timeout=secs + 20)
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": f"iperf3 rc {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"}
    if "error" in j:
        return {"error": f"iperf3: {j['error']}"}
    end = j["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end.get("sum_sent", {}).get("retransmits", 0)}


def run_wrk(lab, secs: int) -> dict:
    argv = ["wrk", "-t2", "-c32", f"-d{secs}s", "--timeout", "2s", "-H", "Connection: close",
            f"http://{VIP}:{PORT_HTTP}/"]
    r = lab.run("client", argv, timeout=secs + 20)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if not m:
        return {"error": f"wrk rc {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"}
    out = {"cps": float(m.group(1))}
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", r.stdout)
    if e:
        out["errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, e.groups())))
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    if n:
        out["non2xx"] = int(n.group(1))
    t = re.search(r"(\d+) requests in", r.stdout)
    out["requests"] = int(t.group(1)) if t else None
    return out


def run_latency(lab, rate: int, secs: float) -> dict:
    count = max(1, int(rate * secs))
    argv = [sys.executable, str(SCRIPT), "_latency", "--host", VIP, "--port",
            str(PORT_HTTP), "--rate", str(rate), "--count", str(count), "--timeout", "3"]
    r = lab.run("client", argv, timeout=secs + 30)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": f"latency client rc {r.returncode}: {r.stderr.strip()[-300:]}"}


def trafgen_cfg(path: str, nflows: int = 64) -> None:
    with open(path, "w") as f:
        f.write("{\n"
                f"  eth(da={DIRECTOR_MAC0}, sa={CLIENT_MAC}),\n"
                f"  ipv4(sa={CLIENT_IP}, da={VIP}, ttl=64),\n"
                f"  udp(sp=dinc(40000, {40000 + nflows - 1}), dp={PORT_SMALL}),\n"
                "  fill(0x00, 18)\n"
                "}\n")


def small_frames(nflows: int = 64) -> list[bytes]:
    """The same 60-byte frames (64 on the wire with the FCS) as trafgen_cfg, for the fallback sender."""
    out = []
    for i in range(nflows):
        out.append(udp_frame(CLIENT_IP, 40000 + i, PORT_SMALL))
    return out


def _csum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src: str, sport: int, dport: int) -> bytes:
    eth = bytes.fromhex(DIRECTOR_MAC0.replace(":", "")) + bytes.fromhex(CLIENT_MAC.replace(":", "")) + b"\x08\x00"
    payload = bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(VIP))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)  # checksum 0: none (IPv4)
    return eth + ip + udp + payload


class Small:
    """The 64-byte UDP load: trafgen if it works here, else a paced raw socket from this process."""

    def __init__(self, tmp: str) -> None:
        self.cfg = os.path.join(tmp, "small.trafgen")
        trafgen_cfg(self.cfg)
        self.use_trafgen: bool | None = None  # decided on first use
        self.note = ""

    def send(self, lab, pps: int, count: int) -> tuple[int, float]:
        """Send ``count`` frames at ``pps`` (0: as fast as the sender goes); returns (frames sent, seconds)."""
        if self.use_trafgen is not False:
            argv = ["trafgen", "-o", "eth0", "-i", self.cfg, "-P", "1", "--no-sock-mem", "-Q", "-C",
                    "-n", str(count)] + (["-b", f"{pps}pps"] if pps else [])
            tx0 = tx_total(lab.ns["client"], ("eth0",))
            t0 = time.monotonic()
            r = lab.run("client", argv, timeout=count / (pps or 100_000) * 3 + 20)
            dt = time.monotonic() - t0
            sent = tx_total(lab.ns["client"], ("eth0",)) - tx0
            if r.returncode == 0 and sent >= count * 0.99:
                self.use_trafgen = True
                return count, dt
            if self.use_trafgen is None:
                self.use_trafgen = False
                self.note = (f"trafgen could not run here (rc {r.returncode}: {r.stderr.strip()[-200:]}); "
                             "the 64-byte load came from a paced AF_PACKET socket in this script instead")
            else:
                raise RuntimeError(f"trafgen failed (rc {r.returncode}): {r.stderr.strip()[-300:]}")
        return self._fallback(lab, pps, count)

    @staticmethod
    def _fallback(lab, pps: int, count: int) -> tuple[int, float]:
        from pylvs.lab.netns import inside
        with inside(lab.ns["client"]):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.bind(("eth0", 0))
            frames = small_frames()
            t0 = time.monotonic()
            sent = 0
            while sent < count and time.monotonic() - t0 < count / (pps or 100_000) + 10:
                due = int((time.monotonic() - t0) * pps) + 1 if pps else count
                while sent < min(due, count):
                    with contextlib.suppress(BlockingIOError, OSError):
                        s.send(frames[sent % len(frames)])
                    sent += 1
            return sent, time.monotonic() - t0
        finally:
            s.close()


# ------------------------------------------------------------------------------------------ the idle flows

def fill_idle(lab, n: int, timeout: float) -> dict:
    """Send single-packet UDP flows from distinct (address, port)s to VIP:PORT_IDLE until ``n`` have been
    forwarded by the director (its eth1 transmissions), keeping the backlog in pylvs's socket small."""
    from pylvs.lab.netns import inside
    with inside(lab.ns["client"]):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind(("eth0", 0))
    dns = lab.ns["director"]

    def forwarded() -> int:
        return netdev(dns)["eth1"][1]

    base = forwarded()
    templates: dict[int, bytearray] = {}
    window, chunk = 1500, 250
    sent = lost = i = 0
    t0 = time.monotonic()
    last_done, last_change = 0, t0
    why = "done"
    try:
        while True:
            now = time.monotonic()
            done = forwarded() - base
            if done != last_done:
                last_done, last_change = done, now
            if done >= n:
                break
            if now - t0 > timeout:
                why = f"time limit {timeout:.0f} s reached at {done / (now - t0):.0f} flows/s"
                break
            if now - last_change > 5.0:
                why = "pylvs stopped forwarding (no progress for 5 s)"
                break
            in_flight = sent - lost - done
            if now - last_change > 0.2 and in_flight > 0:
                lost += in_flight  # given up on: dropped before pylvs read them
                in_flight = 0
                last_change = now
            if in_flight < window and sent - lost < n:
                k = min(chunk, n - (sent - lost))
                for _ in range(k):
                    a, p = divmod(i, IDLE_PORTS)
                    t = templates.get(a)
                    if t is None:
                        t = templates[a] = bytearray(udp_frame(socket.inet_ntoa(struct.pack("!I", IDLE_NET + 1 + a)),
                                                               0, PORT_IDLE))
                    struct.pack_into("!H", t, 34, 1024 + p)
                    try:
                        s.send(t)
                    except OSError:
                        pass
                    i += 1
                sent += k
            else:
                time.sleep(0.0005)
    finally:
        s.close()
    time.sleep(0.5)
    secs = time.monotonic() - t0
    delivered = sum(rs_count(lab, "idle"))
    return {"asked": n, "sent": i, "delivered": delivered, "secs": secs, "rate": delivered / secs if secs else 0,
            "why": why}


# ------------------------------------------------------------------------------------------ the latency client

async def _latency_main(host: str, port: int, rate: float, count: int, timeout: float) -> dict:
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    lat: list[float] = []
    errors: Counter[str] = Counter()
    # Latency by perf_counter: uvloop's loop.time() moves in whole milliseconds.
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        sched = start + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        w = None
        try:
            async with asyncio.timeout(timeout):
                r, w = await asyncio.open_connection(host, port)
                w.write(req)
                data = await r.read()
            if not data.startswith(b"HTTP/1.1 200"):
                errors["bad_response"] += 1
                return
            lat.append(time.perf_counter() - sched)
        except TimeoutError:
            errors["timeout"] += 1
        except OSError as e:
            errors[type(e).__name__] += 1
        finally:
            if w is not None:
                w.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    lat.sort()

    def pct(p: float) -> float | None:
        return round(lat[max(0, math.ceil(p * len(lat)) - 1)] * 1e3, 3) if lat else None

    return {"count": count, "ok": len(lat), "errors": dict(errors), "elapsed": time.monotonic() - t0,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def latency_cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_throughput.py _latency")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args(argv)
    a.count = min(a.count, 100_000)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(_latency_main(a.host, a.port, a.rate, a.count, a.timeout))))
    return 0
