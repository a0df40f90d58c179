"""One balancer in one fresh lab: the servers, the balancer, every figure."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import time

from . import DIP, PORT_HTTP, PORT_IPERF, VIP, Durations, log
from .lab import netdev, wait_listening
from .loads import Small, cpu_times, fill_idle, rs_count, rss_mb, run_iperf, run_latency, run_wrk
from .peers import KERNEL_NFT, RS_NFT, haproxy_cfg, nginx_cfg, pylvs_toml

class Run:
    """One balancer in one fresh lab: start the servers and the balancer, take every figure, stop."""

    def __init__(self, key: str, lab_mode: str, d: Durations, small: Small, tmp: pathlib.Path,
                 idle_flows: int, max_connections: int) -> None:
        self.key, self.lab_mode, self.d, self.small, self.tmp = key, lab_mode, d, small, tmp
        self.idle_flows, self.max_connections = idle_flows, max_connections
        self.res: dict = {}
        self.idle: dict = {}
        self.notes: list[str] = []
        self.lb_pid: int | None = None
        self.live = None

    # -- setup
    def setup_servers(self, lab) -> None:
        nft = self.tmp / "rs.nft"
        nft.write_text(RS_NFT)
        for n in (1, 2):
            role = f"rs{n}"
            r = lab.run(role, ["nft", "-f", str(nft)], timeout=10)
            if r.returncode != 0:
                raise RuntimeError(f"nft on {role}: {r.stderr.strip()}")
            ngx = self.tmp / f"nginx-{role}"
            ngx.mkdir(exist_ok=True)
            (ngx / "nginx.conf").write_text(nginx_cfg(str(ngx)))
            lab.popen(role, ["nginx", "-e", str(ngx / "error.log"), "-p", str(ngx), "-c", str(ngx / "nginx.conf")],
                      stdout=subprocess.DEVNULL, stderr=open(ngx / "stderr.log", "wb"))
            lab.popen(role, ["iperf3", "-s", "-p", str(PORT_IPERF)], stdout=subprocess.DEVNULL,
                      stderr=open(self.tmp / f"iperf3-{role}.log", "wb"))
        for n in (1, 2):
            wait_listening(lab.ns[f"rs{n}"], PORT_HTTP, f"nginx on rs{n}")
            wait_listening(lab.ns[f"rs{n}"], PORT_IPERF, f"iperf3 -s on rs{n}")
        # Enough client ports that wrk's connections do not wrap around in the run.
        from pylvs.lab.netns import set_sysctls
        set_sysctls(lab.ns["client"], {"net.ipv4.ip_local_port_range": "1024 65535"})

    def kernel_addresses(self, lab, forward: bool) -> None:
        for argv in (["ip", "addr", "add", "198.18.0.1/24", "dev", "eth0"],
                     ["ip", "addr", "add", f"{VIP}/32", "dev", "eth0"],
                     ["ip", "addr", "add", f"{DIP}/24", "dev", "eth1"]):
            r = lab.run("director", argv, timeout=10)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
        from pylvs.lab.netns import set_sysctls
        conf = "net.ipv4.conf."
        set_sysctls(lab.ns["director"], {"net.ipv4.ip_forward": int(forward),
                                          "net.ipv4.ip_local_port_range": "1024 65535",
                                          **{conf + i + ".rp_filter": 0 for i in ("all", "default", "eth0", "eth1")}})

    def offloads(self, lab) -> str:
        from pylvs.io.ethtool import get_offloads
        from pylvs.lab.netns import inside
        out = []
        with contextlib.suppress(Exception):
            for i in ("eth0", "eth1"):
                with inside(lab.ns["director"]):
                    o = get_offloads(i)
                out.append(f"{i} " + " ".join(f"{k} {'on' if v else 'off'}" for k, v in sorted(o.items())))
        return "; ".join(out) or "unknown"

    def start_lb(self, lab) -> None:
        if self.key in ("kernel", "haproxy"):
            self.notes.append(f"director offloads (kernel defaults): {self.offloads(lab)}")
        if self.key == "kernel":
            self.kernel_addresses(lab, forward=True)
            p = self.tmp / "lb.nft"
            p.write_text(KERNEL_NFT)
            r = lab.run("director", ["nft", "-f", str(p)], timeout=10)
            if r.returncode != 0:
                raise RuntimeError(f"nft DNAT rules: {r.stderr.strip()}")
        elif self.key == "haproxy":
            self.kernel_addresses(lab, forward=False)
            p = self.tmp / "haproxy.cfg"
            p.write_text(haproxy_cfg())
            proc = lab.popen("director", ["haproxy", "-f", str(p), "-db"], stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / "haproxy.log", "wb"))
            try:
                wait_listening(lab.ns["director"], PORT_HTTP, "haproxy")
            except Exception as e:
                raise RuntimeError(f"{e}; haproxy: {(self.tmp / 'haproxy.log').read_text(errors='replace')[-500:]}")
            self.lb_pid = proc.pid
        else:
            from pylvs.lab.demo import LiveLab
            p = self.tmp / f"pylvs-{self.key}.toml"
            p.write_text(pylvs_toml(self.key, self.max_connections))
            self.live = LiveLab(lab, p, self.tmp)
            self.live.start()
            self.lb_pid = self.live.proc.pid

    def split_cpus(self, lab) -> None:
        """``--rps``: the balancer process on CPU 0, and the receive processing of every other host's veth (what
        runs in the sender's system call otherwise: veth delivers by netif_rx, and the softirq runs on the
        way out of the sender's send) steered to CPU 1 by RPS.  On one machine the balancer otherwise pays for
        its peers' network stacks in its own send calls, which separate hosts would run themselves; the
        kernel's DNAT gets the same steering."""
        for role in ["client", "gw"] + [f"rs{n}" for n in (1, 2)]:
            for ifname in ("eth0", "eth1"):
                lab.run(role, ["sh", "-c", f"[ -e /sys/class/net/{ifname} ] && echo 2 > "
                                           f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus || true"], timeout=5)
        if self.lb_pid:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{self.lb_pid}/task"):
                    os.sched_setaffinity(int(tid), {0})
        self.notes.append("--rps: balancer process on CPU 0, its peers' veth receive processing on CPU 1 (RPS)")

    # -- measurements
    def lb_alive(self) -> bool:
        return self.live is None or self.live.proc.poll() is None

    def _sample(self, lab):
        """(CPU seconds of the balancer process, frames it handled so far): for pylvs the frames the director's
        interfaces transmitted (what it forwarded; frames lost in its socket buffer are not counted), for
        HAProxy the frames they received (its own sends leave as TSO super-frames, one count per 64 KB)."""
        if not self.lb_pid:
            return None, 0, 0.0, time.monotonic()
        d = netdev(lab.ns["director"])
        col = 0 if self.key == "haproxy" else 1
        user, system = cpu_times(self.lb_pid)
        return user + system, sum(d[i][col] for i in ("eth0", "eth1") if i in d), system, time.monotonic()

    def _cpu_share(self, out: dict, tag: str, before, after) -> None:
        """How busy the balancer process was over the load (share of one CPU) and how much of it in the kernel."""
        if before[0] is None:
            return
        cpu, wall = after[0] - before[0], after[3] - before[3]
        out[f"busy_{tag}"] = 100 * cpu / wall if wall > 0 else None
        out[f"sys_{tag}"] = 100 * (after[2] - before[2]) / cpu if cpu > 0 else None

    def _cpu_per_pkt(self, before, after) -> float | None:
        if before[0] is None:
            return None
        pkts = after[1] - before[1]
        return (after[0] - before[0]) / pkts * 1e6 if pkts > 0 else None

    def bulk(self, lab, out: dict, streams: int) -> None:
        tag = f"bulk{streams}"
        b = self._sample(lab)
        r = run_iperf(lab, self.d.bulk, streams)
        a = self._sample(lab)
        if "error" in r:
            self.notes.append(f"{tag}: {r['error']}")
            return
        out[tag] = r["gbps"]
        out[f"retr{streams}"] = r["retransmits"]
        out[f"cpu_{tag}"] = self._cpu_per_pkt(b, a)
        out[f"pkts_{tag}"] = a[1] - b[1]
        self._cpu_share(out, tag, b, a)

    def small_load(self, lab, out: dict, paced: bool) -> None:
        """64-byte UDP: ``paced`` at the fixed offered rate, else the same count as fast as trafgen sends."""
        tag = "small" if paced else "smallmax"
        count = int(self.d.small_pps * self.d.small)
        c0 = rs_count(lab, "small")
        b = self._sample(lab)
        r0 = netdev(lab.ns["director"])["eth0"][0]
        sent, dt = self.small.send(lab, self.d.small_pps if paced else 0, count)
        time.sleep(0.5)  # what is still queued in the balancer
        a = self._sample(lab)
        at_dir = netdev(lab.ns["director"])["eth0"][0] - r0
        c1 = rs_count(lab, "small")
        got = [y - x for x, y in zip(c0, c1)]
        out[f"{tag}_offered"] = sent / dt / 1e3
        out[tag] = sum(got) / dt / 1e3
        out[f"{tag}_loss"] = 100.0 * (1 - sum(got) / sent) if sent else None
        out[f"{tag}_detail"] = (f"{'paced' if paced else 'unpaced'} 64-byte: {sent} sent in {dt:.2f} s, {at_dir} "
                                f"received by the director's eth0, {sum(got)} reached the servers {got}")
        out[f"cpu_{tag}"] = self._cpu_per_pkt(b, a)
        self._cpu_share(out, tag, b, a)

    def small_loads(self, lab, out: dict, prefix: str = "") -> None:
        if self.key == "haproxy":  # mode tcp: no UDP
            return
        for paced in (True, False):
            what = f"{self.d.small_pps} pps offered" if paced else "unpaced"
            log(f"{self.key}: {prefix}64-byte UDP, {int(self.d.small_pps * self.d.small)} frames, {what}")
            try:
                self.small_load(lab, out, paced)
            except Exception as e:  # noqa: BLE001 -- one figure missing, the others stand
                self.notes.append(f"{prefix}64-byte UDP ({what}): {type(e).__name__}: {e}")
            time.sleep(self.d.settle)

    def measure(self, lab) -> None:
        d = self.d
        # A first check that the service works at all (and ARP/neighbours are warm).
        chk = run_latency(lab, 50, 0.4)
        if chk.get("ok", 0) == 0:
            raise RuntimeError(f"no HTTP request through the VIP succeeded: {chk}")
        for streams in (1, 4):
            log(f"{self.key}: iperf3 {d.bulk} s, {streams} stream(s)")
            self.bulk(lab, self.res, streams)
            time.sleep(d.settle)
        log(f"{self.key}: latency, {d.lat_rate}/s for {d.lat} s")
        lat = run_latency(lab, d.lat_rate, d.lat)
        if "error" in lat:
            self.notes.append(f"latency: {lat['error']}")
        else:
            self.res.update(lat_p50=lat.get("p50_ms"), lat_p99=lat.get("p99_ms"), lat_ok=lat["ok"],
                            lat_count=lat["count"], lat_errors=lat["errors"])
            if lat["errors"]:
                self.notes.append(f"latency: {lat['ok']}/{lat['count']} ok, errors {lat['errors']}")
        time.sleep(d.settle)
        self.small_loads(lab, self.res)
        log(f"{self.key}: wrk {d.wrk} s, 2 threads, 32 connections, Connection: close")
        b = self._sample(lab)
        w = run_wrk(lab, d.wrk)
        a = self._sample(lab)
        if "error" in w:
            self.notes.append(f"wrk: {w['error']}")
        else:
            self.res["cps"] = w["cps"]
            self.res["cpu_cps"] = self._cpu_per_pkt(b, a)
            self._cpu_share(self.res, "cps", b, a)
            errs = {k: v for k, v in (w.get("errors") or {}).items() if v}
            if errs or w.get("non2xx"):
                self.notes.append(f"wrk: {w.get('requests')} requests, socket errors {errs or 'none'}, "
                                  f"non-2xx {w.get('non2xx', 0)}")
        if not self.lb_alive():
            self.notes.append(f"pylvs EXITED during the run (rc {self.live.proc.returncode})")

    def measure_idle(self, lab) -> None:
        """Fill pylvs's table with idle UDP flows, then bulk and 64-byte again."""
        n = self.idle_flows
        time.sleep(self.d.settle)
        rss0 = rss_mb(self.lb_pid)
        log(f"{self.key}: filling the connection table with {n} idle flows (at most {self.d.fill_timeout:.0f} s)")
        fill = fill_idle(lab, n, self.d.fill_timeout)
        fill["rss_before_mb"], fill["rss_after_mb"] = rss0, rss_mb(self.lb_pid)
        self.idle["fill"] = fill
        if not self.lb_alive():
            self.idle["skipped"] = f"pylvs exited during the fill (rc {self.live.proc.returncode})"
            return
        if fill["delivered"] < 0.5 * n:
            self.idle["skipped"] = (f"only {fill['delivered']} of {n} flows reached the servers in "
                                    f"{fill['secs']:.0f} s ({fill['why']}): not measured with a part-filled table")
            return
        for streams in (1, 4):
            log(f"{self.key}: with idle flows: iperf3 {self.d.bulk} s, {streams} stream(s)")
            self.bulk(lab, self.idle, streams)
            time.sleep(self.d.settle)
        self.small_loads(lab, self.idle, "with idle flows: ")
        if not self.lb_alive():
            self.idle["skipped"] = f"pylvs exited after the fill (rc {self.live.proc.returncode})"

    def execute(self) -> None:
        from pylvs.lab.netns import Lab
        t0 = time.monotonic()
        with Lab(self.lab_mode, servers=2, offloads=self.d.offloads) as lab:
            self.setup_servers(lab)
            self.start_lb(lab)
            if self.d.rps:
                self.split_cpus(lab)
            stats = None
            try:
                self.measure(lab)
                if self.idle_flows and self.key == "nat":
                    self.measure_idle(lab)
            finally:
                if self.live is not None:
                    try:
                        stats = self.live.stop(timeout=120)
                    except Exception as e:  # noqa: BLE001
                        self.notes.append(f"pylvs stop: {e}")
                    self.pylvs_log = self.live.log()
            if stats:
                self.res["stats"] = stats
        self.res["secs"] = time.monotonic() - t0
