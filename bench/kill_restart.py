"""What happens to a transfer when pylvs is killed (SIGKILL) mid-way and started again.

    sudo python bench/kill_restart.py [--mode nat] [--mb 100] [--down 1.0]

For each mode: a namespace lab, a bulk download through pylvs, SIGKILL pylvs once 20 MB have arrived, start it again
after ``--down`` seconds, and report whether the download finished, how long it stalled, and whether new
connections work after the restart.  Prints figures; it is an experiment, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pylvs.lab.demo import VIP, LiveLab, config_for  # noqa: E402
from pylvs.lab.netns import Lab  # noqa: E402


def _rx_bytes(lab) -> int:
    r = lab.run("client", ["cat", "/sys/class/net/eth0/statistics/rx_bytes"], timeout=5)
    return int(r.stdout.strip() or 0)


def one(mode: str, mb: int, down: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Lab(mode) as lab:
        live = LiveLab(lab, config_for(ROOT / "examples", mode, "afpacket"), pathlib.Path(tmp))
        live.start()
        bulk = lab.popen("client", [sys.executable, "-m", "pylvs.lab.client", "bulk", "--host", VIP, "--port",
                                    "80", "--bytes", str(mb * 1_000_000), "--timeout", "40"],
                         stdout=subprocess.PIPE, text=True)
        # Kill once the data really flows (the client first computes the expected hash): 20 MB received.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _rx_bytes(lab) < 20_000_000:
            time.sleep(0.05)
        live.proc.send_signal(signal.SIGKILL)
        live.proc.wait(5)
        t_kill = time.monotonic()
        time.sleep(down)
        live = LiveLab(lab, live.config, pathlib.Path(tmp))
        live.start()
        after = live.client("http", "--host", VIP, "--port", "80", "--count", "20", "--timeout", "3")
        out, _ = bulk.communicate(timeout=60)
        res = json.loads(out)
        stats = live.stop()
        return {
            "mode": mode,
            "bulk_ok": res["ok"],
            "bulk_bytes": res["bytes"],
            "bulk_error": res.get("error"),
            "bulk_elapsed_s": round(res["elapsed"], 2),
            "since_kill_s": round(time.monotonic() - t_kill, 2),
            "new_conns_ok_after_restart": f"{after['ok']}/20",
            "drops_after_restart": stats["drops"],
            "after_restart_tcp_pkts_in": stats["services"][0]["pkts_in"],
            "after_restart_tcp_conns": stats["services"][0]["conns"],
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", action="append", choices=("nat", "dr", "tun", "fullnat"))
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--down", type=float, default=1.0)
    a = ap.parse_args()
    for mode in a.mode or ["nat", "dr", "tun", "fullnat"]:
        print(json.dumps(one(mode, a.mb, a.down)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
