"""TAP adapter and host recipe (pylvs/io/tap.py, pylvs/io/hostsetup.py) against a real kernel (root).

In a namespace of our own (``pl-t-xxxxxx``, entered by this thread with pylvs.lab.netns.inside() so the
assertions run in this process; removed at the end whatever happens), a lab director with eth0
198.18.0.1/24 and eth1 198.19.0.1/24 (veth pairs whose peers stay in the namespace), a TapPort opened from
examples/tap-{nat,fullnat}.toml, the plan applied and read back through netlink and /proc/sys, ARP checked
both ways (pylvs -> kernel over the TAP; a client on eth0 / a real server on eth1 -> proxy ARP), then undone
and compared with the state from before; a partial failure of an offloads step and the kernel's
ip_forward propagation undone too.  Only 198.18.0.0/15 addresses, only inside that namespace.  The
unprivileged part (plan, describe, rollback with fake steps, TAP error messages): tests/unit/test_hostsetup.py.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import select
import socket
import struct
import time
import tomllib
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from pylvs.config import load_config, parse_config
from pylvs.io import ethtool, hostsetup, sysctl, tap
from pylvs.io.hostsetup import HostSetupError
from pylvs.io.port import Port, PortError
from pylvs.testing import arp_frame, udp_frame

EX = Path(__file__).resolve().parents[2] / "examples"
LAB_KERNEL = {"lo": [IPv4Interface("127.0.0.1/8")], "eth0": [IPv4Interface("198.18.0.1/24")],
              "eth1": [IPv4Interface("198.19.0.1/24")]}
VIP, LIP = "198.18.0.100", "198.19.0.250"
RIPS = ["198.19.0.11", "198.19.0.12", "198.19.0.13"]
BROADCAST, ZERO_MAC = b"\xff" * 6, b"\x00" * 6


def cfg_of(name: str, mutate=None):
    data = tomllib.loads((EX / name).read_text())
    if mutate:
        mutate(data)
    return parse_config(data, str(EX / name))


@pytest.fixture(autouse=True)
def _pylvs_logs_reach_caplog(monkeypatch):
    # pylvs.logsetup.setup_logging (run by CLI tests earlier in the session) stops propagation to the root
    # logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("pylvs"), "propagate", True)


# --------------------------------------------------------------------------- namespace part

def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create network namespaces and TAP devices"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (tun module not loaded)"
    try:
        from pyroute2 import netns  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed"
    return None


needs_netns = pytest.mark.skipif(_can_netns() is not None, reason=_can_netns() or "")


@pytest.fixture
def ns():
    """A fresh namespace with the tap-lab director's kernel interfaces, entered for the test's duration."""
    from pyroute2 import IPRoute, netns

    from pylvs.lab.netns import inside

    name = f"pl-t-{secrets.token_hex(3)}"
    try:
        netns.create(name)
    except Exception as e:
        pytest.skip(f"cannot create a network namespace: {e}")
    try:
        with inside(name):  # this thread only (pyroute2's pushns is wrong from threads: see inside())
            for k in ("all", "default"):
                sysctl.write(f"net.ipv6.conf.{k}.disable_ipv6", "1")  # no ND/MLD noise
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                for ifname, addr in (("eth0", "198.18.0.1"), ("eth1", "198.19.0.1")):
                    ipr.link("add", ifname=ifname, kind="veth", peer=f"{ifname}p")
                    for n in (ifname, f"{ifname}p"):
                        ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
                    ipr.addr("add", index=ipr.link_lookup(ifname=ifname)[0], address=addr, prefixlen=24)
            # start from values the recipe changes, so that undo has something to restore
            sysctl.write("net.ipv4.ip_forward", "0")
            sysctl.write("net.ipv4.conf.all.rp_filter", "1")  # strict
            yield name
    finally:
        netns.remove(name)


SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.neigh.eth0.proxy_delay",
           "net.ipv4.neigh.eth1.proxy_delay", "net.ipv4.conf.eth0.rp_filter", "net.ipv4.conf.eth1.rp_filter",
           "net.ipv4.conf.all.accept_redirects"] + [f"net.ipv4.conf.{i}.forwarding" for i in
                                                    ("default", "lo", "eth0", "eth1", "eth0p", "eth1p")]


def state() -> dict:
    """Everything the recipe may touch, read back through netlink and /proc/sys."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl.ndmsg import NTF_PROXY

    with IPRoute() as ipr:
        names = {ln["index"]: ln.get_attr("IFLA_IFNAME") for ln in ipr.get_links()}
        routes = sorted(
            (r.get_attr("RTA_TABLE"), f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}",
             r.get_attr("RTA_GATEWAY"), names.get(r.get_attr("RTA_OIF")))
            for t in (254, 100) for r in ipr.get_routes(family=socket.AF_INET, table=t))
        rules = sorted((r.get_attr("FRA_PRIORITY") or 0, r.get_attr("FRA_SRC"), r["src_len"],
                        r.get_attr("FRA_TABLE")) for r in ipr.get_rules(family=socket.AF_INET))
        addrs = sorted((names[a["index"]], f"{a.get_attr('IFA_LOCAL')}/{a['prefixlen']}")
                       for a in ipr.get_addr(family=socket.AF_INET))
        proxies = []
        for ifname in ("eth0", "eth1"):
            for a in (VIP, LIP):
                try:
                    ipr.neigh("get", dst=a, ifindex=ipr.link_lookup(ifname=ifname)[0], flags=NTF_PROXY)
                    proxies.append((a, ifname))
                except Exception:
                    pass
    return {"routes": routes, "rules": rules, "addrs": addrs, "proxies": proxies,
            "sysctls": {k: sysctl.read(k) for k in SYSCTLS}}


def arp_request(src_mac: bytes, src_ip: str, target: str) -> bytes:
    return arp_frame(src_mac, BROADCAST, 1, src_mac, src_ip, ZERO_MAC, target)


def arp_reply(src_mac: bytes, src_ip: str, dst_mac: bytes, dst_ip: str) -> bytes:
    return arp_frame(src_mac, dst_mac, 2, src_mac, src_ip, dst_mac, dst_ip)


def parse_arp(frame: bytes) -> dict | None:
    frame = bytes(frame)  # a TAP read is a bytearray
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack_from("!H", frame, 20)[0]
    return {"dst": frame[0:6], "op": op, "sha": frame[22:28], "spa": socket.inet_ntoa(frame[28:32]),
            "tha": frame[32:38], "tpa": socket.inet_ntoa(frame[38:42])}


def await_arp_reply(recv, fd: int, spa: str, tpa: str, timeout: float = 3.0) -> dict:
    """The first ARP reply spa -> tpa; bounded in time and in frames looked at."""
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < 1000 and (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        for frame in recv():
            seen += 1
            a = parse_arp(frame)
            if a and a["op"] == 2 and a["spa"] == spa and a["tpa"] == tpa:
                return a
    raise AssertionError(f"no ARP reply {spa} -> {tpa} within {timeout}s ({seen} frames seen)")


def proxy_arp_check(ifname_peer: str, target: str, asker_ip: str, kernel_ifname: str) -> None:
    """A host on ``ifname_peer`` (the veth peer of a kernel interface) ARPs for ``target``: the kernel must
    answer with ``kernel_ifname``'s MAC (a proxy entry, the route to the target leaving by the TAP)."""
    asker_mac = bytes.fromhex("020000000010")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
        s.bind((ifname_peer, 0))
        s.setblocking(False)
        kernel_mac = _mac_of(kernel_ifname)

        def recv():
            out = []
            for _ in range(64):
                try:
                    out.append(s.recv(2048))
                except BlockingIOError:
                    break
            return out
        s.send(arp_request(asker_mac, asker_ip, target))
        reply = await_arp_reply(recv, s.fileno(), target, asker_ip)
    assert reply["sha"] == kernel_mac and reply["tha"] == asker_mac


def _mac_of(ifname: str) -> bytes:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
        return bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))


def _tap_exists(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


@needs_netns
@pytest.mark.parametrize("example", ["tap-nat.toml", "tap-fullnat.toml"])
def test_tap_port_and_recipe(ns, example, caplog):
    cfg = cfg_of(example)
    before = state()
    assert not _tap_exists("pylvs0")
    port = tap.TapPort.open(cfg.interfaces[0])
    applied = None
    try:
        assert isinstance(port, Port) and port.kind == "tap" and port.name == "pylvs0"
        assert port.mac == bytes.fromhex("0200000001fe") != port.kernel_mac
        assert port.mtu == 1500 and port.recv_batch(8) == []  # non-blocking, nothing pending
        assert sysctl.read("net.ipv6.conf.pylvs0.disable_ipv6") == "1"

        steps = hostsetup.plan(cfg)  # the kernel's addresses read live: eth0/eth1 of the lab
        # ... give the plan tests/unit/test_hostsetup.py checks with the same addresses injected
        assert [s.describe() for s in steps] == [s.describe() for s in hostsetup.plan(cfg, kernel_addrs=LAB_KERNEL)]
        assert sum(isinstance(s, hostsetup.AddRule) for s in steps) == (3 if example == "tap-nat.toml" else 0)
        applied = hostsetup.apply(steps)

        after = state()
        routes = set(after["routes"]) - set(before["routes"])
        want = {(254, f"{VIP}/32", "198.18.255.2", "pylvs0"), (254, "198.18.255.0/30", None, "pylvs0")}
        if example == "tap-nat.toml":
            want.add((100, "0.0.0.0/0", "198.18.255.2", "pylvs0"))
            assert set(after["rules"]) - set(before["rules"]) == {(1000, rip, 32, 100) for rip in RIPS}
            assert after["proxies"] == [(VIP, "eth0")]
        else:
            want.add((254, f"{LIP}/32", "198.18.255.2", "pylvs0"))
            assert after["rules"] == before["rules"]
            assert after["proxies"] == [(VIP, "eth0"), (LIP, "eth1")]
        assert routes == want
        assert ("pylvs0", "198.18.255.1/30") in after["addrs"]
        sc = after["sysctls"]
        assert sc["net.ipv4.ip_forward"] == "1" and sc["net.ipv4.conf.all.rp_filter"] == "0"
        assert sc["net.ipv4.conf.eth0.forwarding"] == "1"  # the kernel's propagation
        assert sysctl.read("net.ipv4.conf.pylvs0.rp_filter") == "0"
        assert sc["net.ipv4.neigh.eth0.proxy_delay"] == "0"
        assert sc["net.ipv4.neigh.eth1.proxy_delay"] == ("0" if example == "tap-fullnat.toml" else
                                                          before["sysctls"]["net.ipv4.neigh.eth1.proxy_delay"])

        # pylvs -> kernel over the TAP: who has 198.18.255.1?
        port.send(arp_request(port.mac, "198.18.255.2", "198.18.255.1"))
        reply = await_arp_reply(lambda: port.recv_batch(64), port.fileno(), "198.18.255.1", "198.18.255.2")
        assert reply["dst"] == port.mac and reply["tha"] == port.mac and reply["sha"] == port.kernel_mac
        assert port.counters["tx_frames"] == 1 and port.counters["rx_frames"] >= 1

        # on-link hosts -> kernel: proxy ARP for the VIP (and the LIP) answered at once
        proxy_arp_check("eth0p", VIP, "198.18.0.10", "eth0")
        if example == "tap-fullnat.toml":
            proxy_arp_check("eth1p", LIP, "198.19.0.11", "eth1")

        if example == "tap-fullnat.toml":
            # the order `pylvs run` uses: ports closed first (the TAP takes its routes and address with it),
            # then the recipe undone, quietly
            port.close()
            assert not _tap_exists("pylvs0")
        with caplog.at_level(logging.DEBUG, logger="pylvs.hostsetup"):
            applied.undo()
        applied = None
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        port.close()
        assert state() == before
        assert not _tap_exists("pylvs0")  # not persistent: gone with its fd
    finally:
        if applied is not None:
            applied.undo()
        port.close()


@needs_netns
def test_apply_failure_rolls_back(ns):
    cfg = cfg_of("tap-nat.toml")
    before = state()
    port = tap.TapPort.open(cfg.interfaces[0])
    try:
        steps = hostsetup.plan(cfg)
        bad = hostsetup.AddRoute(IPv4Network("198.18.0.101/32"), IPv4Address("198.18.255.2"), "nosuch0")
        with pytest.raises(HostSetupError) as ei:
            hostsetup.apply(steps[:5] + [bad] + steps[5:])
        assert "step 6/12 `ip route add 198.18.0.101/32 via 198.18.255.2 dev nosuch0` failed" in str(ei.value)
        assert "no interface 'nosuch0'" in str(ei.value)
        assert state() == before
        # a foreign route for the VIP would take pylvs's traffic: refused, and rolled back
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.route("add", dst=f"{VIP}/32", oif=ipr.link_lookup(ifname="eth1")[0])
        with pytest.raises(HostSetupError, match="a route to 198.18.0.100/32 already exists in table main"):
            hostsetup.apply(steps)
        with IPRoute() as ipr:
            ipr.route("del", dst=f"{VIP}/32", oif=ipr.link_lookup(ifname="eth1")[0])
        assert state() == before
    finally:
        port.close()


@needs_netns
def test_preexisting_entries_are_left_alone(ns):
    """An identical rule (left by a killed pylvs) or proxy entry present before setup is still there after."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl.ndmsg import NTF_PROXY

    with IPRoute() as ipr:
        ipr.rule("add", family=socket.AF_INET, src=RIPS[0], src_len=32, table=100, priority=1000)
        ipr.neigh("add", dst=VIP, ifindex=ipr.link_lookup(ifname="eth0")[0], flags=NTF_PROXY)
    before = state()
    cfg = cfg_of("tap-nat.toml")
    port = tap.TapPort.open(cfg.interfaces[0])
    try:
        applied = hostsetup.apply(hostsetup.plan(cfg))
        applied.undo()
    finally:
        port.close()
    assert state() == before
    assert (1000, RIPS[0], 32, 100) in before["rules"] and (VIP, "eth0") in before["proxies"]


@needs_netns
def test_afpacket_recipe(ns):
    from pyroute2 import IPRoute

    from pylvs.io import ethtool

    with IPRoute() as ipr:  # the AF_PACKET lab: no kernel addresses on the director's interfaces
        for ifname in ("eth0", "eth1"):
            ipr.flush_addr(index=ipr.link_lookup(ifname=ifname)[0])
    sysctl.write("net.ipv4.ip_forward", "1")
    ethtool.set_offloads("eth0", gro=True)
    before = (ethtool.get_offloads("eth0"), ethtool.get_offloads("eth1"), state()["sysctls"])
    assert before[0]["gro"]
    # With offload (the default) GRO stays as it is: pylvs takes its super-frames whole; without, it goes off.
    for offload in (True, False):
        applied = hostsetup.apply(hostsetup.plan(load_config(EX / "nat.toml"), offload=offload))
        try:
            assert ethtool.get_offloads("eth0")["gro"] is offload
            assert not ethtool.get_offloads("eth0")["lro"] and not ethtool.get_offloads("eth1")["lro"]
            assert sysctl.read("net.ipv4.ip_forward") == "0"
            assert sysctl.read("net.ipv4.conf.eth0.forwarding") == "0"
        finally:
            applied.undo()
        assert (ethtool.get_offloads("eth0"), ethtool.get_offloads("eth1"), state()["sysctls"]) == before


@needs_netns
def test_offloads_partial_failure_is_undone(ns, monkeypatch):
    """tso and gso changed on a real veth, then the gro ioctl fails: both are back as they were."""
    ethtool.set_offloads("eth0", tso=True, gso=True, gro=False)
    before = ethtool.get_offloads("eth0")
    real, set_gro = ethtool._ioctl, ethtool._GET_SET["gro"][1]

    def ioctl(sock, ifname, cmd, data=0):
        if cmd == set_gro:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real(sock, ifname, cmd, data)
    monkeypatch.setattr(ethtool, "_ioctl", ioctl)
    step = hostsetup.Offloads("eth0", {"tso": False, "gso": False, "gro": True})
    with pytest.raises(HostSetupError, match=r"`ethtool -K eth0 tso off gso off gro on` failed: eth0: cannot set "
                                             r"gro: .*\(everything changed up to it was undone\)"):
        hostsetup.apply([hostsetup.Sysctl("net.ipv4.conf.all.rp_filter", "0"), step])
    assert ethtool.get_offloads("eth0") == before
    assert sysctl.read("net.ipv4.conf.all.rp_filter") == "1"


@needs_netns
def test_ip_forward_propagation_is_undone(ns):
    """The kernel copies ip_forward into every interface's forwarding (and its opposite into
    all.accept_redirects); one interface forwarding on its own before keeps doing so after the undo."""
    sysctl.write("net.ipv4.conf.eth1.forwarding", "1")  # individually, ip_forward staying 0
    before = state()["sysctls"]
    assert before["net.ipv4.ip_forward"] == "0" and before["net.ipv4.conf.eth1.forwarding"] == "1"
    step = hostsetup.IpForward("1")
    applied = hostsetup.apply([step])
    try:
        sc = state()["sysctls"]
        assert {sc[f"net.ipv4.conf.{i}.forwarding"] for i in ("default", "lo", "eth0", "eth1", "eth0p")} == {"1"}
        assert sc["net.ipv4.conf.all.accept_redirects"] == "0"
        assert before["net.ipv4.conf.all.accept_redirects"] == "1"
    finally:
        applied.undo()
    assert state()["sysctls"] == before


@needs_netns
def test_tap_busy_names(ns):
    from pyroute2 import IPRoute

    iface = load_config(EX / "tap-nat.toml").interfaces[0]
    first = tap.TapPort.open(iface)
    try:  # a second pylvs on the same name
        with pytest.raises(PortError) as ei:
            tap.TapPort.open(iface)
        assert "'pylvs0' is already in use by another TUN/TAP device" in str(ei.value)
    finally:
        first.close()
    with IPRoute() as ipr:
        ipr.link("add", ifname="pylvs0", kind="veth", peer="pylvs0p")
    with pytest.raises(PortError) as ei:
        tap.TapPort.open(iface)
    assert "'pylvs0' is already in use by an existing veth device" in str(ei.value)
    with IPRoute() as ipr:  # the veth is untouched
        assert ipr.link_lookup(ifname="pylvs0")


@needs_netns
def test_tap_mac_and_mtu(ns):
    import dataclasses

    from pyroute2 import IPRoute

    iface = load_config(EX / "tap-nat.toml").interfaces[0]
    p = tap.TapPort.open(dataclasses.replace(iface, mac=None, mtu=9000))
    try:
        assert p.mac == tap.derived_mac("pylvs0") != p.kernel_mac
        assert _mac_of("pylvs0") == p.kernel_mac
        with IPRoute() as ipr:
            assert ipr.get_links(ipr.link_lookup(ifname="pylvs0")[0])[0].get_attr("IFLA_MTU") == 9000
        assert p.mtu == 9000
        p.send(b"\x00" * 5)  # a runt: refused by the kernel, counted, never raised
        assert p.counters["tx_errors"] == 1 and p.counters["tx_frames"] == 0
    finally:
        p.close()
        p.close()  # idempotent
    assert not _tap_exists("pylvs0")


class Wire:
    """One end of a link as a test host sees it (the TAP's fd, or an AF_PACKET socket on a veth peer):
    answers ARP requests for ``owned`` addresses with ``mac`` while waiting for an expected frame."""

    def __init__(self, fd: int, recv, send, mac: bytes, owned: tuple[str, ...]) -> None:
        self.fd, self.recv, self.send, self.mac, self.owned = fd, recv, send, mac, owned

    def expect(self, match, timeout: float = 3.0):
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < 1000 and (left := deadline - time.monotonic()) > 0:
            if not select.select([self.fd], [], [], left)[0]:
                break
            for frame in self.recv():
                seen += 1
                a = parse_arp(frame)
                if a and a["op"] == 1 and a["tpa"] in self.owned:
                    self.send(arp_reply(self.mac, a["tpa"], a["sha"], a["spa"]))
                    continue
                if frame[12:14] == b"\x08\x00" and match(frame):
                    return frame
        raise AssertionError(f"expected frame not seen within {timeout}s ({seen} frames)")


def _veth_wire(ifname: str, mac: bytes, owned: tuple[str, ...]):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    s.setblocking(False)

    def recv():
        out = []
        for _ in range(64):
            try:
                data, addr = s.recvfrom(4096)
            except BlockingIOError:
                break
            if addr[2] != socket.PACKET_OUTGOING:
                out.append(data)
        return out
    return s, Wire(s.fileno(), recv, s.send, mac, owned)


def _ip_is(frame: bytes, src: str, dst: str) -> bool:
    return frame[26:30] == socket.inet_aton(src) and frame[30:34] == socket.inet_aton(dst)


@needs_netns
def test_tap_nat_recipe_routes_both_ways(ns):
    """With the recipe applied, the kernel carries NAT traffic through pylvs's TAP; the test plays pylvs,
    a client on eth0p and a real server on eth1p (and answers ARP for each of them)."""
    cfg = cfg_of("tap-nat.toml")
    port = tap.TapPort.open(cfg.interfaces[0])
    applied = hostsetup.apply(hostsetup.plan(cfg))
    client_mac, rs_mac = bytes.fromhex("020000000010"), bytes.fromhex("020000000211")
    c_sock, client = _veth_wire("eth0p", client_mac, ("198.18.0.10",))
    r_sock, server = _veth_wire("eth1p", rs_mac, ("198.19.0.11",))
    pylvs = Wire(port.fileno(), lambda: port.recv_batch(64), port.send, port.mac, ("198.18.255.2",))
    try:
        eth0_mac, eth1_mac = _mac_of("eth0"), _mac_of("eth1")
        # client -> VIP: routed into the TAP, to pylvs's MAC (after the kernel ARPs for 198.18.255.2)
        c_sock.send(udp_frame(client_mac, eth0_mac, "198.18.0.10", VIP, 40000, 53, b"pylvs"))
        f = pylvs.expect(lambda fr: _ip_is(fr, "198.18.0.10", VIP))
        assert f[0:6] == port.mac and f[6:12] == port.kernel_mac and f[22] == 63  # forwarded: TTL - 1
        # pylvs -> real server, still from the client's address (rp_filter off on the TAP lets it in)
        port.send(udp_frame(port.mac, port.kernel_mac, "198.18.0.10", RIPS[0], 40000, 5353, b"pylvs"))
        f = server.expect(lambda fr: _ip_is(fr, "198.18.0.10", RIPS[0]))
        assert f[0:6] == rs_mac and f[6:12] == eth1_mac
        # the real server's reply to the client: steered into the TAP by the `from RIP` rule, not to eth0
        r_sock.send(udp_frame(rs_mac, eth1_mac, RIPS[0], "198.18.0.10", 5353, 40000, b"pylvs"))
        f = pylvs.expect(lambda fr: _ip_is(fr, RIPS[0], "198.18.0.10"))
        assert f[0:6] == port.mac
        # pylvs's rewritten reply VIP -> client: out of eth0 to the client
        port.send(udp_frame(port.mac, port.kernel_mac, VIP, "198.18.0.10", 53, 40000, b"pylvs"))
        f = client.expect(lambda fr: _ip_is(fr, VIP, "198.18.0.10"))
        assert f[0:6] == client_mac and f[6:12] == eth0_mac
    finally:
        c_sock.close()
        r_sock.close()
        applied.undo()
        port.close()
