"""The namespace lab itself (pylvs/lab/netns.py), with no pylvs running: wiring, addresses, MACs, sysctls,
offloads, the lab servers, and that teardown leaves nothing behind — also when a build fails halfway.

There is no ping binary here, so pings are ICMP echoes from a raw socket opened inside the namespace.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest
from pyroute2 import NetNS, netns

from pylvs.io import sysctl as sysctls
from pylvs.io.ethtool import get_offloads
from pylvs.lab import netns as labnet
from pylvs.lab.netns import Lab, LabError, have_netadmin, inside
from pylvs.native import checksum

_REASON = have_netadmin()
needs_ns = pytest.mark.skipif(_REASON is not None, reason=f"cannot build namespaces: {_REASON}")


def ping(ns: str, dst: str, timeout: float = 1.0, tries: int = 3) -> bool:
    """One ICMP echo round trip from inside ``ns`` (a few tries: the first one waits for ARP)."""
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with s:
        ident = os.getpid() & 0xFFFF
        for seq in range(1, tries + 1):
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"pylvs-lab"
            s.sendto(hdr[:2] + struct.pack("!H", checksum(hdr)) + hdr[4:], (dst, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    pkt, (src, _) = s.recvfrom(2048)
                except TimeoutError:
                    break
                icmp = pkt[(pkt[0] & 0xF) * 4:]
                if src == dst and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                    return True
    return False


def http_get(ns: str, ip: str, port: int, timeout: float = 3.0) -> str:
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.sendall(f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        for _ in range(100):  # bounded: the server closes after one answer
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def udp_echo(ns: str, ip: str, port: int, payload: bytes = b"hello") -> bytes:
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(2.0)
        s.sendto(payload, (ip, port))
        return s.recv(2048)


def sysctl(ns: str, key: str) -> str:
    with inside(ns):
        return sysctls.read(key)


def link_info(ns: str, ifname: str) -> tuple[str, list[str]]:
    """(MAC, ["a.b.c.d/len", ...]) of an interface, read over rtnetlink."""
    with NetNS(ns, flags=0) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        mac = ipr.get_links(idx)[0].get("IFLA_ADDRESS")
        addrs = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx, family=socket.AF_INET)]
    return mac, addrs


def default_gw(ns: str) -> str | None:
    with NetNS(ns, flags=0) as ipr:
        for r in ipr.get_routes(family=socket.AF_INET, table=254):
            if r["dst_len"] == 0:
                return r.get("RTA_GATEWAY")
    return None


def lab_leftovers(suffix: str) -> list[str]:
    return [n for n in netns.listnetns() if n.endswith("-" + suffix)]


def assert_gone(lab: Lab, procs: list, inodes: list[int]) -> None:
    assert lab_leftovers(lab.suffix) == []
    assert all(p.poll() is not None for p in procs)  # reaped by destroy()
    assert _pids_in(inodes) == []  # and nothing else lives in the lab's namespaces


def _pids_in(inodes: list[int]) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                out.append(int(pid))
        except OSError:
            pass
    return out


def test_invalid_combinations_refused():
    with pytest.raises(LabError):
        Lab("dr", "tap")
    with pytest.raises(LabError):
        Lab("tun", "tap")
    with pytest.raises(LabError):
        Lab("nope")
    lab = Lab("nat", suffix="abc123")
    assert lab.ns["director"] == "pl-dir-abc123" and lab.ns["sw"] == "pl-sw-abc123"
    assert set(lab.ns) == {"sw", "client", "director", "gw", "rs1", "rs2", "rs3"}
    assert lab.rs_ports == (8080, 5353) and Lab("dr").rs_ports == (80, 53)
    lab.destroy()  # never built: a no-op


@needs_ns
@pytest.mark.parametrize("mode", ["nat", "dr"])
def test_lab_topology(mode):
    lab = Lab(mode)
    with lab:
        names = netns.listnetns()
        assert all(n in names for n in lab.ns.values())
        inodes = [os.stat(os.path.join(netns.NETNS_RUN_DIR, n)).st_ino for n in lab.ns.values()]

        # Addresses and MACs as in examples/*.toml.
        assert link_info(lab.ns["client"], "eth0") == ("02:00:00:00:00:10", ["198.18.0.10/24"])
        assert link_info(lab.ns["director"], "eth0") == ("02:00:00:00:01:01", [])  # afpacket: pylvs owns IPs
        # the kernel has one address of its own there, to send health checks from
        assert link_info(lab.ns["director"], "eth1") == ("02:00:00:00:01:02", ["198.19.0.2/24"])
        assert link_info(lab.ns["gw"], "eth0")[1] == ["198.18.0.254/24"]
        assert link_info(lab.ns["gw"], "eth1")[1] == ["198.19.0.254/24"]
        for n in (1, 2, 3):
            ns = lab.ns[f"rs{n}"]
            assert link_info(ns, "eth0") == (f"02:00:00:00:02:1{n}", [f"198.19.0.1{n}/24"])
            assert link_info(ns, "lo")[1] == (["127.0.0.1/8"] + (["198.18.0.100/32"] if mode == "dr" else []))
            assert default_gw(ns) == ("198.19.0.1" if mode == "nat" else "198.19.0.254")
        assert default_gw(lab.ns["client"]) == "198.18.0.254"
        with NetNS(lab.ns["sw"], flags=0) as ipr:  # every switch port is enslaved to its bridge
            br = {l.get("IFLA_IFNAME"): l["index"] for l in ipr.get_links()}
            masters = {l.get("IFLA_IFNAME"): l.get("IFLA_MASTER") for l in ipr.get_links()}
        assert {p: masters[p] for p in ("c0", "d0", "g0")} == dict.fromkeys(("c0", "d0", "g0"), br["brc"])
        assert {p: masters[p] for p in ("d1", "g1", "r1", "r2", "r3")} == dict.fromkeys(
            ("d1", "g1", "r1", "r2", "r3"), br["brs"])

        # Sysctls.
        assert sysctl(lab.ns["director"], "net.ipv4.ip_forward") == "0"
        assert sysctl(lab.ns["gw"], "net.ipv4.ip_forward") == "1"
        assert sysctl(lab.ns["gw"], "net.ipv4.conf.all.rp_filter") == "0"
        assert sysctl(lab.ns["client"], "net.ipv6.conf.eth0.disable_ipv6") == "1"
        assert sysctl(lab.ns["rs1"], "net.ipv4.conf.all.arp_ignore") == ("1" if mode == "dr" else "0")

        # Offloads: no super-packets from the traffic sources, checksum offload left on.
        with inside(lab.ns["client"]):
            off = get_offloads("eth0")
        assert (off["tso"], off["gso"], off["gro"], off["tx_csum"]) == (False, False, False, True)
        with inside(lab.ns["rs2"]):
            assert not get_offloads("eth0")["tso"]

        # The wires work.
        assert ping(lab.ns["client"], "198.18.0.254")
        assert ping(lab.ns["rs1"], "198.19.0.254")

        # The lab servers answer, on the ports of this mode.
        http, udp = lab.rs_ports
        for n in (1, 2, 3):
            assert http_get(lab.ns[f"rs{n}"], "127.0.0.1", http).startswith(f"rs{n} 127.0.0.1:")
            assert udp_echo(lab.ns[f"rs{n}"], "127.0.0.1", udp) == f"rs{n} hello".encode()
        if mode == "dr":  # RS default route is the gw: the client reaches rs2 through it, both ways
            assert http_get(lab.ns["client"], "198.19.0.12", http).startswith("rs2 198.18.0.10:")

        # popen/run/wait_ready for the lead's processes.
        res = lab.run("client", ["ip", "-o", "link", "show", "eth0"], timeout=5)
        assert res.returncode == 0 and "02:00:00:00:00:10" in res.stdout
        p = lab.popen("director", lab.py("director", "pylvs.lab.servers", "--name", "x", "--http-port", "0",
                                         "--udp-port", "0"), stdout=subprocess.PIPE)
        lab.wait_ready(p, 10)
        procs = list(lab._procs)
        assert len(procs) == 4
    assert_gone(lab, procs, inodes)
    lab.destroy()  # idempotent


@needs_ns
def test_tap_driver_gives_director_addresses():
    with Lab("nat", "tap", servers=1) as lab:
        assert set(lab.ns) == {"sw", "client", "director", "gw", "rs1"}
        assert link_info(lab.ns["director"], "eth0") == ("02:00:00:00:01:01", ["198.18.0.1/24"])
        assert link_info(lab.ns["director"], "eth1") == ("02:00:00:00:01:02", ["198.19.0.1/24"])
        assert sysctl(lab.ns["director"], "net.ipv4.ip_forward") == "1"
        assert sysctl(lab.ns["director"], "net.ipv4.conf.eth0.rp_filter") == "0"
    assert lab_leftovers(lab.suffix) == []


@needs_ns
def test_build_failure_midway_leaves_nothing(monkeypatch):
    def boom(self):
        raise RuntimeError("injected")

    monkeypatch.setattr(Lab, "_sysctls", boom)
    lab = Lab("dr")
    with pytest.raises(LabError, match="sysctls.*injected"), lab:
        pytest.fail("must not get here")
    assert lab_leftovers(lab.suffix) == []


@needs_ns
def test_server_start_failure_kills_what_started(monkeypatch):
    """Servers already running when the wait fails: they must die with the lab."""
    started = []
    real_spawn = Lab._spawn

    def spawn(self, role, argv):
        p = real_spawn(self, role, argv)
        started.append(p)
        return p

    def never_ready(self, proc, timeout):
        raise LabError("injected: not ready")

    monkeypatch.setattr(Lab, "_spawn", spawn)
    monkeypatch.setattr(Lab, "wait_ready", never_ready)
    lab = Lab("nat")
    with pytest.raises(LabError, match="injected"):
        lab.build()
    assert len(started) == 3 and all(p.poll() is not None for p in started)
    assert lab_leftovers(lab.suffix) == []


@needs_ns
def test_wait_ready_reports_a_dead_process():
    with Lab("nat", servers=1) as lab:
        p = lab.popen("client", ["sh", "-c", "echo starting; echo boom >&2; exit 3"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        with pytest.raises(LabError, match=r"exited \(3\)[\s\S]*boom"):
            lab.wait_ready(p, 5)
        q = lab.popen("client", ["sleep", "30"], stdout=subprocess.PIPE)
        t = time.monotonic()
        with pytest.raises(LabError, match="not ready within"):
            lab.wait_ready(q, 0.5)
        assert time.monotonic() - t < 2
        # A process the lab does not know about, in its own session: destroy() still finds and kills it.
        stray = subprocess.Popen(["ip", "netns", "exec", lab.ns["gw"], "sleep", "30"], start_new_session=True)
        t = time.monotonic()
    assert q.poll() is not None
    assert stray.wait(5) == -9 and time.monotonic() - t < 5
    assert lab_leftovers(lab.suffix) == []


def test_module_constants_match_examples():
    assert labnet.VIP == "198.18.0.100" and labnet.rs_mac(3) == "02:00:00:00:02:13"
