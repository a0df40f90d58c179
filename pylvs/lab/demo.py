"""``pylvs demo``: a throwaway namespace lab with real traffic through a real pylvs process.

For each mode: build the lab (client, director, gateway, three real servers running HTTP and UDP echo
servers; see pylvs/lab/netns.py), start ``pylvs run`` with ``examples/<mode>.toml`` in the director
namespace, send HTTP requests on separate connections, UDP echoes and one bulk download from the client,
stop pylvs with SIGTERM, and print which server answered how often next to pylvs's own counters.  The lab
is torn down on the way out, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

from pylvs.lab.netns import Lab, LabError, have_netadmin

VIP = "198.18.0.100"
PYLVS_READY_TIMEOUT = 15.0
METRICS = "127.0.0.1:9470"


def config_for(examples: pathlib.Path, mode: str, driver: str) -> pathlib.Path:
    return examples / (f"tap-{mode}.toml" if driver == "tap" else f"{mode}.toml")


class LiveLab:
    """A :class:`Lab` plus a running pylvs in its director namespace (used by the demo and the tests)."""

    def __init__(self, lab: Lab, config: pathlib.Path, workdir: pathlib.Path, *extra: str) -> None:
        self.lab = lab
        self.config = config
        self.stats_path = workdir / "pylvs-stats.json"
        self.log_path = workdir / "pylvs.log"
        #: the control socket (a file of this run: never the system's default) and the metrics endpoint,
        #: inside the director's namespace
        self.ctl_socket = workdir / "pylvs-ctl.sock"
        self.metrics_addr = METRICS
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "pylvs", "--log-level", "info", "run", "--config", str(self.config),
                "--host-setup", "--stats-out", str(self.stats_path), "--ctl-socket", str(self.ctl_socket),
                "--metrics", self.metrics_addr, *self.extra]
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = self.lab.popen("director", argv, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            self.lab.wait_ready(self.proc, PYLVS_READY_TIMEOUT)
        except LabError as e:
            raise LabError(f"pylvs did not start: {e}\n{self.log()[-2000:]}") from None

    def stop(self, timeout: float = 10.0) -> dict:
        """SIGTERM pylvs, wait, return its final counters (from --stats-out)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise LabError("pylvs did not stop within %.0f s of SIGTERM" % timeout) from None
        if self.proc.returncode != 0:
            raise LabError(f"pylvs exited with {self.proc.returncode}\n{self.log()[-2000:]}")
        return json.loads(self.stats_path.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """``pylvs ctl --socket <this run's> ARGS`` (plain output: stdout is a pipe)."""
        return subprocess.run([sys.executable, "-m", "pylvs", "ctl", "--socket", str(self.ctl_socket), *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def ctl_json(self, *args: str) -> dict | list:
        res = self.ctl("--json", *args)
        if res.returncode != 0:
            raise LabError(f"pylvs ctl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return json.loads(res.stdout)

    def metrics(self) -> str:
        """The Prometheus exposition, fetched inside the director's namespace."""
        code = ("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                f"'http://{self.metrics_addr}/metrics', timeout=5).read().decode())")
        res = self.lab.run("director", [sys.executable, "-c", code], timeout=15)
        if res.returncode != 0:
            raise LabError(f"metrics fetch failed: {res.stderr[-500:]}")
        return res.stdout

    def client(self, *args: str, timeout: float = 60.0) -> dict:
        """Run ``python -m pylvs.lab.client ARGS`` in the client namespace; its JSON answer."""
        res = self.lab.run("client", [sys.executable, "-m", "pylvs.lab.client", *args], timeout=timeout)
        if res.returncode != 0:
            raise LabError(f"client {' '.join(args)} failed ({res.returncode}): {res.stderr[-2000:]}")
        return json.loads(res.stdout)


def _table(mode: str, http: dict, udp: dict, bulk: dict, stats: dict, requests: int) -> str:
    rows = []
    by_addr = {}
    for s in stats["services"]:
        for r in s["real_servers"]:
            by_addr.setdefault(r["server"].rsplit(":", 1)[0], []).append(r)
    lines = [f"  {'server':<18}{'HTTP':>6}{'share':>8}{'UDP':>6}   pylvs conns (tcp+udp)   pkts in/out"]
    for n in (1, 2, 3):
        name, addr = f"rs{n}", f"198.19.0.1{n}"
        h = http["by_server"].get(name, 0)
        u = udp["by_server"].get(name, 0)
        rs = by_addr.get(addr, [])
        conns = "+".join(str(r["conns"]) for r in rs)
        pk = f"{sum(r['pkts_in'] for r in rs)}/{sum(r['pkts_out'] for r in rs)}"
        lines.append(f"  {name + ' ' + addr:<18}{h:>6}{100 * h / max(1, http['ok']):>7.1f}%{u:>6}   "
                     f"{conns:<23} {pk}")
        rows.append(h)
    lines.append(f"  HTTP {http['ok']}/{requests} ok at {http['rps']:.0f} req/s (one connection each); "
                 f"UDP echo {udp['ok']}/{udp['ok'] + udp['lost']}; "
                 f"bulk {bulk['bytes'] / 1e6:.0f} MB from {bulk.get('server', '?')} "
                 f"{'sha256 ok' if bulk['ok'] else 'CORRUPT/INCOMPLETE'} at {bulk['gbps']:.3f} Gb/s")
    fp = stats.get("fast_path")
    if fp:
        fwd, punted = fp["forwarded"], sum(v for k, v in fp.items() if k.startswith("punt_"))
        lines.append(f"  fast path ({fp['implementation']}): {fwd} frames forwarded, {punted} to the slow path "
                     f"({100 * fwd / max(1, fwd + punted):.1f}% fast)")
    drops = stats.get("drops") or {}
    lines.append("  pylvs drops: " + (", ".join(f"{k}={v}" for k, v in drops.items()) or "none"))
    ports = stats.get("ports") or {}
    for pname, c in ports.items():
        lines.append(f"  port {pname}: rx {c.get('rx_frames', 0)} tx {c.get('tx_frames', 0)} "
                     f"GSO in/out {c.get('rx_gso', 0)}/{c.get('tx_gso', 0)} tx errors {c.get('tx_errors', 0)}")
    if http.get("errors"):
        lines.append(f"  HTTP errors: {http['errors']}")
    return "\n".join(lines)


def run_demo(examples: pathlib.Path, modes: list[str], driver: str, requests: int, bulk_mb: int) -> int:
    reason = have_netadmin()
    if reason:
        print(f"pylvs demo: cannot build network namespaces here: {reason}\n"
              "  (run as root, or try `pylvs demo --offline`, which replays captures instead)", file=sys.stderr)
        return 3
    failed = False
    for mode in modes:
        if driver == "tap" and mode not in ("nat", "fullnat"):
            print(f"\n== {mode.upper()}: skipped (the TAP driver serves NAT and FULLNAT)")
            continue
        cfg = config_for(examples, mode, driver)
        print(f"\n== {mode.upper()} over {driver}  ({cfg})", flush=True)
        with tempfile.TemporaryDirectory(prefix="pylvs-demo-") as tmp, Lab(mode, driver) as lab:
            live = LiveLab(lab, cfg, pathlib.Path(tmp))
            live.start()
            try:
                http = live.client("http", "--host", VIP, "--port", "80", "--count", str(requests),
                                   "--timeout", "5")
                udp = live.client("udp", "--host", VIP, "--port", "53", "--count", "30", "--timeout", "2")
                bulk = live.client("bulk", "--host", VIP, "--port", "80", "--bytes",
                                   str(bulk_mb * 1_000_000), "--timeout", "60", timeout=90)
                listing = live.ctl("list", "--stats").stdout
                metrics = [ln for ln in live.metrics().splitlines()
                           if ln.startswith(("pylvs_backend_connections_total", "pylvs_health_check_up",
                                             "pylvs_conn_table_entries", "pylvs_build_info"))]
            finally:
                stats = live.stop()
            print(_table(mode, http, udp, bulk, stats, requests), flush=True)
            print("  pylvs ctl list --stats:\n" + "".join(f"    {ln}\n" for ln in listing.splitlines()), end="")
            print("  metrics (excerpt):\n" + "".join(f"    {ln}\n" for ln in metrics), end="", flush=True)
            failed |= http["ok"] != requests or not bulk["ok"] or udp["ok"] == 0
    return 1 if failed else 0


def main_demo(examples: pathlib.Path, mode: str | None, driver: str, requests: int, bulk_mb: int) -> int:
    modes = [mode] if mode else ["nat", "dr", "tun", "fullnat"]
    try:
        return run_demo(examples, modes, driver, requests, bulk_mb)
    except KeyboardInterrupt:
        print("\npylvs demo: interrupted; lab torn down", file=sys.stderr)
        return 130
    except LabError as e:
        print(f"pylvs demo: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_demo(pathlib.Path(os.environ.get("PYLVS_EXAMPLES", "examples")), None, "afpacket", 100, 10))
