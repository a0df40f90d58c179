"""The small pieces around the control plane: the receive filter's kernel-address exclusion, sd_notify,
the rate-limited log, and the IPVS-style rate estimator."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from pylvs.control import sdnotify
from pylvs.control.snapshot import RateEstimator
from pylvs.io import bpf
from pylvs.logsetup import RateLimited
from pylvs.testing import icmp_frame, ip4, tcp_frame

pytestmark = pytest.mark.once

A, B = "02:00:00:00:01:02", "02:00:00:00:02:11"
VIP, RIP, HOST = "198.18.0.100", "198.19.0.11", "198.19.0.2"


def test_filter_leaves_the_kernels_own_addresses_to_the_kernel():
    prog = bpf.program([ip4(VIP)], [ip4(RIP)], host_addrs=[ip4(HOST)])
    # A NAT real server's answer to a health check (from RIP, to the kernel's address): not for pylvs...
    assert bpf.run(prog, tcp_frame(B, A, RIP, HOST, 8080, 40000, 0x12)) == 0
    assert bpf.run(prog, icmp_frame(B, A, RIP, HOST, 0, 0, b"\0\0\0\0")) == 0  # an echo reply to a ping from it
    # ...while its replies to clients and traffic to the VIP still are.
    assert bpf.run(prog, tcp_frame(B, A, RIP, "198.18.0.10", 8080, 40000, 0x12)) == bpf.ACCEPT
    assert bpf.run(prog, tcp_frame(A, B, "198.18.0.10", VIP, 40000, 80, 0x02)) == bpf.ACCEPT
    # Without the exclusion the same health-check answer would be passed up (and counted as a drop).
    assert bpf.run(bpf.program([ip4(VIP)], [ip4(RIP)]), tcp_frame(B, A, RIP, HOST, 8080, 40000, 0x12)) \
        == bpf.ACCEPT


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_one_datagram(tmp_path, monkeypatch, abstract):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        if abstract:
            name = f"pylvs-test-{os.getpid()}"
            srv.bind("\0" + name)
            monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        else:
            path = str(tmp_path / "notify")
            srv.bind(path)
            monkeypatch.setenv("NOTIFY_SOCKET", path)
        srv.settimeout(2)
        assert sdnotify.notify("READY=1", "STATUS=forwarding")
        assert srv.recv(4096) == b"READY=1\nSTATUS=forwarding"
        assert sdnotify.reloading()
        fields = srv.recv(4096).decode().split("\n")
        assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=")
        assert int(fields[1].split("=")[1]) > 0


def test_sd_notify_outside_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_rate_limited_log_says_what_it_held_back(caplog):
    log = logging.getLogger("pylvs.test.ratelimit")
    rl = RateLimited(log, 10.0)
    with caplog.at_level(logging.ERROR, logger="pylvs.test.ratelimit"):
        assert rl.error(100.0, "bad frame %d", 1)
        assert not rl.error(101.0, "bad frame %d", 2)
        assert not rl.error(109.9, "bad frame %d", 3)
        assert rl.error(110.0, "bad frame %d", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 1", "bad frame 4 (and 2 more like it in the last 10 s)"]


class _Counted:
    def __init__(self) -> None:
        self.conns = self.pkts_in = self.pkts_out = self.bytes_in = self.bytes_out = 0


def test_rate_estimator_moves_a_quarter_of_the_way_per_sample():
    o, est = _Counted(), RateEstimator()
    est.sample([o], 0.0)
    assert est.rates(o) == {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0}
    o.conns, o.pkts_in, o.bytes_in = 200, 800, 100_000  # over 2 s: 100 conn/s, 400 pkt/s, 400 kb/s
    est.sample([o], 2.0)
    assert est.rates(o) == {"cps": 25, "inpps": 100, "outpps": 0, "inbps": 100_000, "outbps": 0}
    o.conns = 400
    est.sample([o], 4.0)
    assert est.rates(o)["cps"] == 44  # 25 + (100 - 25) / 4 = 43.75
    est.sample([], 6.0)  # an object no longer sampled is forgotten
    assert est.rates(o)["cps"] == 0
