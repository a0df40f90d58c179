"""The command line: check-config, replay (deterministic, logged), offline demo, run errors, --version."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import dpkt
import pytest

from pylvs.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
MODES = ["nat", "dr", "tun", "fullnat"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylvs", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_version_says_implementation():
    r = run_cli("--version")
    assert r.returncode == 0
    assert "pure" in r.stdout or "native" in r.stdout
    assert "event loop" in r.stdout


@pytest.mark.parametrize("mode", MODES)
def test_check_config_ok(mode, capsys):
    assert main(["check-config", str(EX / f"{mode}.toml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_error_names_file_path_and_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((EX / "nat.toml").read_text().replace("weight = 2", "weight = true"))
    r = run_cli("check-config", str(bad))
    assert r.returncode == 1
    assert str(bad) in r.stderr
    assert "virtual_server[0].real_server[2].weight" in r.stderr
    assert r.stdout == ""


def test_mode_override_makes_nat_config_invalid_for_dr():
    r = run_cli("check-config", str(EX / "nat.toml"), "--mode", "dr")
    assert r.returncode == 1
    assert "virtual_server[0].real_server[0].port" in r.stderr


@pytest.mark.parametrize("mode", MODES)
def test_replay_is_deterministic_and_logged(mode, tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}.pcap"
        log = tmp_path / f"log{i}.jsonl"
        rc = main(["replay", "--config", str(EX / f"{mode}.toml"), str(EX / "captures" / f"{mode}.pcap"),
                   str(out), "--log", str(log)])
        assert rc == 0
        outs.append((out.read_bytes(), log.read_text()))
    assert outs[0] == outs[1]
    records = [json.loads(line) for line in outs[0][1].splitlines()]
    n_in = sum(1 for _ in dpkt.pcap.Reader(open(EX / "captures" / f"{mode}.pcap", "rb")))
    assert [r["frame"] for r in records] == list(range(1, n_in + 1))
    assert set(records[0]) == {"frame", "in", "verdict", "out", "reason"}
    # frame 1 is the client's broadcast ARP for the VIP: answered on eth0
    assert records[0] == {"frame": 1, "in": "eth0", "verdict": "reply", "out": ["eth0"], "reason": ""}
    # the last two frames are the corrupted SYN and the stray ACK
    assert records[-2]["verdict"] == "drop" and records[-2]["reason"] == "ip_bad_checksum"
    assert records[-1]["verdict"] == "drop" and records[-1]["reason"] == "tcp_no_conn"
    n_out = sum(1 for _ in dpkt.pcap.Reader(open(tmp_path / "out0.pcap", "rb")))
    assert n_out == sum(len(r["out"]) for r in records)


def test_offline_demo_runs_every_mode():
    r = run_cli("demo", "--offline")
    assert r.returncode == 0, r.stderr
    for mode in MODES:
        assert f"== {mode.upper()}" in r.stdout
    assert "toa_inserted=4" in r.stdout
    assert "ip_bad_checksum=1" in r.stdout


def test_example_captures_are_reproducible(tmp_path):
    """The committed captures are exactly what the lab script produces."""
    from pylvs.capture_gen import write_capture

    for mode in MODES:
        out = tmp_path / f"{mode}.pcap"
        write_capture(EX / f"{mode}.toml", out)
        assert out.read_bytes() == (EX / "captures" / f"{mode}.pcap").read_bytes(), mode


def test_run_without_config_is_an_error():
    r = run_cli("run")
    assert r.returncode == 2  # argparse: --config is required
    assert "--config" in r.stderr


def test_run_bad_config_exits_1_and_starts_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((EX / "nat.toml").read_text().replace('scheduler = "rr"', 'scheduler = "rrr"'))
    r = run_cli("--config", str(bad))
    assert r.returncode == 1
    assert str(bad) in r.stderr and "scheduler" in r.stderr
    assert "ready" not in r.stdout


def test_run_missing_interface_is_a_clear_error(tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to open an AF_PACKET socket (otherwise the error is about privileges)")
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to run pylvs in a throwaway network namespace")
    cfg = tmp_path / "x.toml"
    cfg.write_text((EX / "nat.toml").read_text().replace('"eth0"', '"nosuchif9"'))
    # In an empty network namespace of its own: whatever happens, nothing touches the host's interfaces.
    r = subprocess.run(["unshare", "--net", sys.executable, "-m", "pylvs", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2
    assert "nosuchif9" in r.stderr and "no such interface" in r.stderr.lower()


def test_run_without_cap_net_raw_is_a_clear_error():
    import os
    import shlex
    import shutil

    if os.geteuid() != 0 or shutil.which("capsh") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, capsh (to drop CAP_NET_RAW) and unshare (a throwaway network namespace)")
    cmd = shlex.join([sys.executable, "-m", "pylvs", "run", "--config", str(EX / "nat.toml")])
    r = subprocess.run(["unshare", "--net", "capsh", "--drop=cap_net_raw,cap_net_admin", "--", "-c", cmd],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "CAP_NET_RAW" in r.stderr and "eth0" in r.stderr
    assert "ready" not in r.stdout
