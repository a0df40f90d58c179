"""Operations against a real pylvs process in a namespace lab: health checks, ``pylvs ctl``, the metrics
endpoint, and reloads under load (issue 5).

One NAT lab (examples/nat.toml: an HTTP health check every second, rise 2, fall 2, quiesce on failure).
Every wait is bounded; the lab is removed even on failure.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pylvs.lab.demo import LiveLab
from pylvs.lab.netns import Lab, have_netadmin

ROOT = pathlib.Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
VIP = "198.18.0.100"

_reason = have_netadmin()
pytestmark = [pytest.mark.skipif(_reason is not None, reason=f"network namespaces unavailable: {_reason}"),
              pytest.mark.once]


def _servers(live: LiveLab, port: int = 80) -> dict[str, dict]:
    snap = live.ctl_json("list")
    svc = next(s for s in snap["services"] if s["protocol"] == "tcp" and s["port"] == port)
    return {r["address"]: r for r in svc["real_servers"]}


def _wait(pred, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def _http(live: LiveLab, n: int) -> dict:
    return live.client("http", "--host", VIP, "--port", "80", "--count", str(n), "--timeout", "5")


def _metrics(live: LiveLab) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(live.metrics()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def _list_without_counters(live: LiveLab) -> str:
    """``ctl list`` as ipvsadm prints it, less the ActiveConn/InActConn columns (connections may change
    state between two reads): services, schedulers, servers, forwarding methods and weights."""
    res = live.ctl("list")
    assert res.returncode == 0, res.stderr
    return "\n".join(" ".join(line.split()[:4]) if line.startswith("  -> ") else line
                     for line in res.stdout.splitlines())


def test_operations_live(tmp_path):
    cfg = tmp_path / "lb.toml"
    cfg.write_text((EX / "nat.toml").read_text())
    t0 = time.monotonic()
    with Lab("nat") as lab:
        live = LiveLab(lab, cfg, tmp_path)
        live.start()
        try:
            # --- health: all three start up; rs1's HTTP server stops -> quiesced within fall x interval
            rs = _wait(lambda: all(r["health"] == "up" for r in _servers(live).values()) and _servers(live),
                       10, "all servers up")
            assert {a: r["weight"] for a, r in rs.items()} == {"198.19.0.11": 1, "198.19.0.12": 1, "198.19.0.13": 2}
            lab.stop_app("rs1")
            t_stop = time.monotonic()
            rs = _wait(lambda: (s := _servers(live))["198.19.0.11"]["health"] == "down" and s, 2 * 1.0 + 3,
                       "rs1 marked down")
            down_after = time.monotonic() - t_stop
            assert rs["198.19.0.11"]["weight"] == 0 and rs["198.19.0.11"]["config_weight"] == 1
            http = _http(live, 20)  # new connections avoid the quiesced server
            assert http["ok"] == 20 and "rs1" not in http["by_server"], http
            # ipvsadm -Lnc over the socket (answered in chunks, joined by the CLI): those 20 are there
            rows = [r for r in live.ctl_json("conns") if r["virtual"] == f"{VIP}:80"]
            assert len(rows) >= 20 and {r["client"].split(":")[0] for r in rows} == {"198.18.0.10"}, rows[:3]
            lab.start_app("rs1")
            _wait(lambda: (s := _servers(live))["198.19.0.11"]["health"] == "up" and s["198.19.0.11"]["weight"] == 1,
                  2 * 1.0 + 3, "rs1 back up after rise")
            log = live.log()
            assert "DOWN after 2 failed http checks" in log and "UP after 2 successful http checks" in log, log[-2000:]

            # --- ctl verbs round-trip: weight, drain, add, save -> reload gives the same list
            svc = ("-t", f"{VIP}:80")
            for args in (("weight", *svc, "-r", "198.19.0.13:8080", "5"),
                         ("drain", *svc, "-r", "198.19.0.12:8080"),
                         ("add-server", *svc, "-r", "198.19.0.14:8080", "-w", "3", "-m")):
                res = live.ctl(*args)
                assert res.returncode == 0, (args, res.stderr)
            rs = _servers(live)
            assert {a: (r["weight"], r["state"]) for a, r in rs.items()} == {
                "198.19.0.11": (1, "ready"), "198.19.0.12": (0, "drain"), "198.19.0.13": (5, "ready"),
                "198.19.0.14": (3, "ready")}
            bad = live.ctl("weight", *svc, "-r", "198.19.0.13:8080", "70000")
            assert bad.returncode == 1 and "weight: 70000 is out of range 0..65535" in bad.stderr, bad.stderr
            assert _servers(live)["198.19.0.13"]["weight"] == 5  # a refused request changed nothing
            listing = _list_without_counters(live)
            saved = live.ctl("save")
            assert saved.returncode == 0, saved.stderr
            res = live.ctl("delete-server", *svc, "-r", "198.19.0.14:8080")
            assert res.returncode == 0 and "198.19.0.14" not in _servers(live)
            cfg.write_text(saved.stdout)
            res = live.ctl("reload")
            assert res.returncode == 0, res.stderr
            assert _list_without_counters(live) == listing

            # --- a bad file is refused by reload (SIGHUP too) and the running state is untouched
            cfg.write_text(saved.stdout.replace("weight = 5", "weight = -5"))
            res = live.ctl("reload")
            assert res.returncode == 1 and "weight" in res.stderr and str(cfg) in res.stderr, res.stderr
            live.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert _list_without_counters(live) == listing and live.proc.poll() is None

            # --- metrics: parse, and the counters match the traffic sent after a zero
            cfg.write_text((EX / "nat.toml").read_text())
            assert live.ctl("reload").returncode == 0
            assert live.ctl("zero").returncode == 0
            http = _http(live, 30)
            assert http["ok"] == 30
            m = _metrics(live)
            tcp = [s for s in m["pylvs_service_connections_total"] if s.labels["proto"] == "TCP"]
            assert [s.value for s in tcp] == [30.0]
            per_rs = {s.labels["remote_address"]: s.value for s in m["pylvs_backend_connections_total"]
                      if s.labels["proto"] == "TCP"}
            assert per_rs == {f"198.19.0.1{n}": float(http["by_server"].get(f"rs{n}", 0)) for n in (1, 2, 3)}
            # each request is at least SYN, ACK, request, FIN/ACK inbound
            pk = [s.value for s in m["pylvs_service_incoming_packets_total"] if s.labels["proto"] == "TCP"]
            assert pk[0] >= 4 * 30
            assert {s.labels["remote_address"]: s.value for s in m["pylvs_health_check_up"]} == {
                "198.19.0.11": 1.0, "198.19.0.12": 1.0, "198.19.0.13": 1.0}
            assert m["pylvs_conn_table_limit"][0].value == 1048576
            assert m["pylvs_build_info"][0].labels["version"]
            assert not any("198.18.0.10" == v for ss in m.values() for s in ss for v in s.labels.values())

            # --- reloads during a steady stream of connections lose none
            stream = lab.popen("client", [sys.executable, "-m", "pylvs.lab.client", "http", "--host", VIP,
                                          "--port", "80", "--count", "3000", "--timeout", "5"],
                               stdout=subprocess.PIPE, text=True)
            bulk = lab.popen("client", [sys.executable, "-m", "pylvs.lab.client", "bulk", "--host", VIP, "--port",
                                        "80", "--bytes", "300000000", "--timeout", "60"],
                             stdout=subprocess.PIPE, text=True)
            weights = ["2", "1"]
            reloads = 0
            deadline = time.monotonic() + 60
            while (stream.poll() is None or bulk.poll() is None) and time.monotonic() < deadline:
                text = (EX / "nat.toml").read_text().replace("weight = 2", f"weight = {weights[reloads % 2]}")
                cfg.write_text(text)
                if reloads % 2:
                    live.proc.send_signal(signal.SIGHUP)
                else:
                    assert live.ctl("reload").returncode == 0
                reloads += 1
                time.sleep(0.2)
            import json

            out, _ = stream.communicate(timeout=30)
            res = json.loads(out)
            bout, _ = bulk.communicate(timeout=30)
            bres = json.loads(bout)
            assert reloads >= 5, reloads
            assert res["ok"] == 3000 and not res["errors"], res
            assert bres["ok"] and bres["bytes"] == 300000000 and bres["sha256"] == bres["expected_sha256"], bres
        finally:
            stats = live.stop()
        assert not stats["drops"].get("internal_error"), stats["drops"]
        assert "reload rejected" in live.log()
    assert down_after <= 2 * 1.0 + 2.5
    assert time.monotonic() - t0 < 150
