"""TAP adapter and host recipe (pylvs/io/tap.py, pylvs/io/hostsetup.py).

Unit part (no privileges): plan()/describe() on the examples with the kernel's addresses injected, the
checks plan() makes, apply()'s rollback and Applied.undo() with fake steps, the Sysctl step on a fake
/proc/sys, TapPort's error messages.

Namespace part (root): in a namespace of our own (``pl-t-xxxxxx``, entered with pyroute2's pushns so the
assertions run in this process; removed at the end whatever happens), a lab director with eth0
198.18.0.1/24 and eth1 198.19.0.1/24 (veth pairs whose peers stay in the namespace), a TapPort opened from
examples/tap-{nat,fullnat}.toml, the plan applied and read back through netlink and /proc/sys, ARP checked
both ways (pylvs -> kernel over the TAP; a client on eth0 / a real server on eth1 -> proxy ARP), then undone
and compared with the state from before.  Only 198.18.0.0/15 addresses, only inside that namespace.
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
from pylvs.io import hostsetup, tap
from pylvs.io.hostsetup import HostSetupError
from pylvs.io.port import Port, PortError

EX = Path(__file__).resolve().parents[2] / "examples"
LAB_KERNEL = {"lo": [IPv4Interface("127.0.0.1/8")], "eth0": [IPv4Interface("198.18.0.1/24")],
              "eth1": [IPv4Interface("198.19.0.1/24")]}
VIP, LIP = "198.18.0.100", "198.19.0.250"
RIPS = ["198.19.0.11", "198.19.0.12", "198.19.0.13"]


def cfg_of(name: str, mutate=None):
    data = tomllib.loads((EX / name).read_text())
    if mutate:
        mutate(data)
    return parse_config(data, str(EX / name))


def commands(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if not ln.startswith("#")]


# --------------------------------------------------------------------------- unit: plan / describe

TAP_NAT_RECIPE = [
    "ip address add 198.18.255.1/30 dev pylvs0",
    "sysctl -w net.ipv4.conf.pylvs0.rp_filter=0",
    "ip route add 198.18.0.100/32 via 198.18.255.2 dev pylvs0",
    "ip route add default via 198.18.255.2 dev pylvs0 table 100",
    "ip rule add from 198.19.0.11/32 lookup 100 priority 1000",
    "ip rule add from 198.19.0.12/32 lookup 100 priority 1000",
    "ip rule add from 198.19.0.13/32 lookup 100 priority 1000",
    "ip neigh add proxy 198.18.0.100 dev eth0",
    "sysctl -w net.ipv4.neigh.eth0.proxy_delay=0",
    "sysctl -w net.ipv4.conf.all.rp_filter=0",
    "sysctl -w net.ipv4.ip_forward=1",
]
TAP_FULLNAT_RECIPE = [
    "ip address add 198.18.255.1/30 dev pylvs0",
    "sysctl -w net.ipv4.conf.pylvs0.rp_filter=0",
    "ip route add 198.18.0.100/32 via 198.18.255.2 dev pylvs0",
    "ip route add 198.19.0.250/32 via 198.18.255.2 dev pylvs0",
    "ip neigh add proxy 198.18.0.100 dev eth0",
    "ip neigh add proxy 198.19.0.250 dev eth1",
    "sysctl -w net.ipv4.neigh.eth0.proxy_delay=0",
    "sysctl -w net.ipv4.neigh.eth1.proxy_delay=0",
    "sysctl -w net.ipv4.conf.all.rp_filter=0",
    "sysctl -w net.ipv4.ip_forward=1",
]
AFPACKET_RECIPE = [
    "ethtool -K eth0 gro off lro off",
    "ethtool -K eth1 gro off lro off",
    "sysctl -w net.ipv4.ip_forward=0",
]


@pytest.mark.parametrize("name,recipe", [
    ("tap-nat.toml", TAP_NAT_RECIPE), ("tap-fullnat.toml", TAP_FULLNAT_RECIPE),
    ("nat.toml", AFPACKET_RECIPE), ("fullnat.toml", AFPACKET_RECIPE),
])
def test_describe_examples(name, recipe):
    kernel = LAB_KERNEL if name.startswith("tap-") else {"lo": LAB_KERNEL["lo"]}
    cfg = load_config(EX / name)
    text = hostsetup.describe(cfg, kernel_addrs=kernel)
    assert commands(text) == recipe
    assert text.startswith(f"# pylvs host recipe for {cfg.file} ({len(recipe)} steps")
    # a comment saying why above every command
    lines = text.splitlines()[1:]
    assert [ln.startswith("# ") for ln in lines] == [True, False] * len(recipe)
    assert [s.describe() for s in hostsetup.plan(cfg, kernel_addrs=kernel)] == recipe


def test_plan_table_and_priority_configurable():
    steps = hostsetup.plan(load_config(EX / "tap-nat.toml"), kernel_addrs=LAB_KERNEL, table=7, rule_priority=42)
    cmds = [s.describe() for s in steps]
    assert "ip route add default via 198.18.255.2 dev pylvs0 table 7" in cmds
    assert "ip rule add from 198.19.0.12/32 lookup 7 priority 42" in cmds


def test_plan_no_proxy_without_on_link_interface():
    # the VIP is not inside any kernel subnet: upstream routers route it here, nobody ARPs for it
    steps = hostsetup.plan(load_config(EX / "tap-fullnat.toml"), kernel_addrs={"eth9": [IPv4Interface("10.1.0.1/16")]})
    cmds = [s.describe() for s in steps]
    assert not [c for c in cmds if "proxy" in c]
    # the TAP's own subnet never gets proxy entries, even if a VIP were inside it
    k = {"pylvs0": [IPv4Interface("198.18.0.254/16")]}
    assert not [s for s in hostsetup.plan(load_config(EX / "tap-fullnat.toml"), kernel_addrs=k)
                if isinstance(s, hostsetup.AddProxyNeighbour)]


@pytest.mark.parametrize("name,kernel,fragment", [
    ("tap-nat.toml", {"eth0": [IPv4Interface("198.18.0.100/24")]}, "198.18.0.100 (VIP) is a kernel address on 'eth0'"),
    ("tap-fullnat.toml", {"lo": [IPv4Interface("198.19.0.250/32")]}, "198.19.0.250 (LIP) is a kernel address on 'lo'"),
    ("nat.toml", {"eth1": [IPv4Interface("198.19.0.1/24")]},
     "198.19.0.1 (pylvs's address on 'eth1') is a kernel address on 'eth1'"),
    ("tap-nat.toml", {"x": [IPv4Interface("198.18.255.2/30")]}, "pylvs's address on 'pylvs0'"),
])
def test_plan_refuses_kernel_owned_addresses(name, kernel, fragment):
    with pytest.raises(HostSetupError) as ei:
        hostsetup.plan(load_config(EX / name), kernel_addrs=kernel)
    assert fragment in str(ei.value) and "ip address del" in str(ei.value)


def test_plan_tap_needs_host_address():
    cfg = cfg_of("tap-nat.toml", lambda d: d["interface"][0].pop("host_address"))
    with pytest.raises(HostSetupError, match="'pylvs0' .*no host_address"):
        hostsetup.plan(cfg, kernel_addrs=LAB_KERNEL)


def test_plan_tap_refuses_dr():
    def mode(m):
        def mutate(d):
            d["mode"] = m
            for vs in d["virtual_server"]:
                for rs in vs["real_server"]:
                    rs.pop("port")  # DR/TUN cannot map ports
        return mutate
    # TUN works behind a TAP (the kernel routes the IPIP packets); no NAT replies to steer
    steps = hostsetup.plan(cfg_of("tap-nat.toml", mode("tun")), kernel_addrs=LAB_KERNEL)
    assert not [s for s in steps if isinstance(s, hostsetup.AddRule)]
    with pytest.raises(HostSetupError, match="198.19.0.11 of tcp 198.18.0.100:80 uses DR, which cannot work"):
        hostsetup.plan(cfg_of("tap-nat.toml", mode("dr")), kernel_addrs=LAB_KERNEL)


def test_plan_refuses_mixed_drivers():
    def mixed(d):
        d["interface"].append({"name": "eth1", "addresses": ["198.19.0.1/24"]})
    with pytest.raises(HostSetupError, match="'tap' and 'afpacket'"):
        hostsetup.plan(cfg_of("tap-nat.toml", mixed), kernel_addrs={})


# --------------------------------------------------------------------------- unit: apply / undo

class FakeStep(hostsetup.Step):
    def __init__(self, name, log, fail_apply=False, fail_undo=None):
        self.name, self.log, self.fail_apply, self.fail_undo = name, log, fail_apply, fail_undo

    def describe(self):
        return f"fake {self.name}"

    def apply(self):
        if self.fail_apply:
            raise OSError(errno.EPERM, "Operation not permitted")
        self.log.append(("apply", self.name))

    def undo(self):
        self.log.append(("undo", self.name))
        if self.fail_undo:
            raise self.fail_undo


def test_apply_rolls_back_and_names_the_step():
    log: list = []
    steps = [FakeStep("a", log), FakeStep("b", log), FakeStep("c", log, fail_apply=True), FakeStep("d", log)]
    with pytest.raises(HostSetupError) as ei:
        hostsetup.apply(steps)
    msg = str(ei.value)
    assert "step 3/4 `fake c` failed: Operation not permitted (needs root / CAP_NET_ADMIN)" in msg
    assert "undone" in msg
    assert log == [("apply", "a"), ("apply", "b"), ("undo", "b"), ("undo", "a")]


def test_applied_undo_reverse_never_raises(caplog):
    log: list = []
    gone = OSError(errno.ENODEV, "No such device")
    steps = [FakeStep("a", log), FakeStep("b", log, fail_undo=RuntimeError("boom")),
             FakeStep("c", log, fail_undo=gone)]
    applied = hostsetup.apply(steps)
    with caplog.at_level(logging.DEBUG, logger="pylvs.hostsetup"):
        applied.undo()
        applied.undo()  # idempotent
    assert [x for x in log if x[0] == "undo"] == [("undo", "c"), ("undo", "b"), ("undo", "a")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["host setup: could not undo `fake b`: boom"]  # ENODEV = already gone: debug only


def test_sysctl_step(tmp_path, monkeypatch):
    monkeypatch.setattr(hostsetup, "PROC_SYS", str(tmp_path))
    f = tmp_path / "net" / "ipv4" / "conf" / "eth0.5" / "rp_filter"
    f.parent.mkdir(parents=True)
    f.write_text("1\n")
    s = hostsetup.Sysctl(("net", "ipv4", "conf", "eth0.5", "rp_filter"), "0")
    assert s.describe() == "sysctl -w net.ipv4.conf.eth0/5.rp_filter=0"
    s.apply()
    assert f.read_text() == "0"
    s.undo()
    assert f.read_text() == "1"
    s.apply()
    f.write_text("2")  # someone else changed it meanwhile: theirs now
    s.undo()
    assert f.read_text() == "2"
    f.write_text("0")  # already the wanted value: nothing to undo
    s.apply()
    s.undo()
    assert f.read_text() == "0"


# --------------------------------------------------------------------------- unit: TapPort errors

def test_derived_mac():
    m = tap.derived_mac("pylvs0")
    assert m == tap.derived_mac("pylvs0") != tap.derived_mac("pylvs1")
    assert len(m) == 6 and m[0] == 0x02  # locally administered, unicast


def test_tap_missing_dev(monkeypatch):
    monkeypatch.setattr(tap, "TUN_DEV", "/nonexistent/net/tun")
    with pytest.raises(PortError, match="TAP pylvs0: /nonexistent/net/tun does not exist .*modprobe tun"):
        tap.TapPort.open(load_config(EX / "tap-nat.toml").interfaces[0])


@pytest.mark.parametrize("code,fragment", [
    (errno.EPERM, "needs CAP_NET_ADMIN"),
    (errno.EACCES, "needs CAP_NET_ADMIN"),
    (errno.EBUSY, "'pylvs0' is already in use"),
    (errno.ENODEV, "cannot open"),
    (errno.EIO, "cannot create the TAP device"),
])
def test_tap_open_errors(monkeypatch, code, fragment):
    pytun = pytest.importorskip("pytun")
    monkeypatch.setattr(tap, "TUN_DEV", "/dev/null")  # exists; the fake below fails first

    def fake(**kw):
        raise pytun.Error(code, os.strerror(code))
    monkeypatch.setattr(pytun, "TunTapDevice", fake)
    with pytest.raises(PortError) as ei:
        tap.TapPort.open(load_config(EX / "tap-nat.toml").interfaces[0])
    assert str(ei.value).startswith("TAP pylvs0: ") and fragment in str(ei.value)


def test_tap_mac_equal_to_kernel_side(monkeypatch):
    pytun = pytest.importorskip("pytun")
    iface = load_config(EX / "tap-nat.toml").interfaces[0]
    closed = []

    class FakeDev:  # what the kernel would hand back if it picked pylvs's MAC for the netdev
        name, hwaddr = "pylvs0", iface.mac

        def close(self):
            closed.append(True)
    monkeypatch.setattr(tap, "TUN_DEV", "/dev/null")
    monkeypatch.setattr(pytun, "TunTapDevice", lambda **kw: FakeDev())
    with pytest.raises(PortError, match="equals the kernel side's MAC"):
        tap.TapPort.open(iface)
    assert closed == [True]  # the half-made device is released


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

    name = f"pl-t-{secrets.token_hex(3)}"
    try:
        netns.create(name)
    except Exception as e:
        pytest.skip(f"cannot create a network namespace: {e}")
    try:
        netns.pushns(name)
        try:
            for k in ("all", "default"):
                _write(f"/proc/sys/net/ipv6/conf/{k}/disable_ipv6", "1")  # no ND/MLD noise
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                for ifname, addr in (("eth0", "198.18.0.1"), ("eth1", "198.19.0.1")):
                    ipr.link("add", ifname=ifname, kind="veth", peer=f"{ifname}p")
                    for n in (ifname, f"{ifname}p"):
                        ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
                    ipr.addr("add", index=ipr.link_lookup(ifname=ifname)[0], address=addr, prefixlen=24)
            # start from values the recipe changes, so that undo has something to restore
            _write("/proc/sys/net/ipv4/ip_forward", "0")
            _write("/proc/sys/net/ipv4/conf/all/rp_filter", "1")  # strict
            yield name
        finally:
            netns.popns()
    finally:
        netns.remove(name)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


SYSCTLS = ["net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/neigh/eth0/proxy_delay",
           "net/ipv4/neigh/eth1/proxy_delay", "net/ipv4/conf/eth0/rp_filter", "net/ipv4/conf/eth1/rp_filter"]


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
            "sysctls": {k: _read(f"/proc/sys/{k}") for k in SYSCTLS}}


def arp_frame(op: int, src_mac: bytes, src_ip: str, dst_mac: bytes, dst_ip: str) -> bytes:
    eth_dst = b"\xff" * 6 if op == 1 else dst_mac
    return (eth_dst + src_mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + src_mac
            + socket.inet_aton(src_ip) + (b"\x00" * 6 if op == 1 else dst_mac) + socket.inet_aton(dst_ip))


def parse_arp(frame: bytes) -> dict | None:
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
        s.send(arp_frame(1, asker_mac, asker_ip, b"", target))
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
@pytest.mark.parametrize("example,recipe", [("tap-nat.toml", TAP_NAT_RECIPE),
                                            ("tap-fullnat.toml", TAP_FULLNAT_RECIPE)])
def test_tap_port_and_recipe(ns, example, recipe, caplog):
    cfg = cfg_of(example)
    before = state()
    assert not _tap_exists("pylvs0")
    port = tap.TapPort.open(cfg.interfaces[0])
    applied = None
    try:
        assert isinstance(port, Port) and port.kind == "tap" and port.name == "pylvs0"
        assert port.mac == bytes.fromhex("0200000001fe") != port.kernel_mac
        assert port.mtu == 1500 and port.recv_batch(8) == []  # non-blocking, nothing pending
        assert _read("/proc/sys/net/ipv6/conf/pylvs0/disable_ipv6") == "1"

        steps = hostsetup.plan(cfg)  # the kernel's addresses read live: eth0/eth1 of the lab
        assert [s.describe() for s in steps] == recipe
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
        assert sc["net/ipv4/ip_forward"] == "1" and sc["net/ipv4/conf/all/rp_filter"] == "0"
        assert _read("/proc/sys/net/ipv4/conf/pylvs0/rp_filter") == "0"
        assert sc["net/ipv4/neigh/eth0/proxy_delay"] == "0"
        assert sc["net/ipv4/neigh/eth1/proxy_delay"] == ("0" if example == "tap-fullnat.toml" else
                                                          before["sysctls"]["net/ipv4/neigh/eth1/proxy_delay"])

        # pylvs -> kernel over the TAP: who has 198.18.255.1?
        port.send(arp_frame(1, port.mac, "198.18.255.2", b"", "198.18.255.1"))
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
    _write("/proc/sys/net/ipv4/ip_forward", "1")
    ethtool.set_offloads("eth0", gro=True)
    before = (ethtool.get_offloads("eth0"), ethtool.get_offloads("eth1"), _read("/proc/sys/net/ipv4/ip_forward"))
    assert before[0]["gro"]
    applied = hostsetup.apply(hostsetup.plan(load_config(EX / "nat.toml")))
    try:
        assert not ethtool.get_offloads("eth0")["gro"] and not ethtool.get_offloads("eth1")["gro"]
        assert _read("/proc/sys/net/ipv4/ip_forward") == "0"
    finally:
        applied.undo()
    assert (ethtool.get_offloads("eth0"), ethtool.get_offloads("eth1"),
            _read("/proc/sys/net/ipv4/ip_forward")) == before


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


def udp_frame(dst_mac: bytes, src_mac: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    import dpkt

    u = dpkt.udp.UDP(sport=sport, dport=dport, data=b"pylvs", ulen=8 + 5)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, ttl=64, data=u)
    return bytes(dpkt.ethernet.Ethernet(dst=dst_mac, src=src_mac, type=0x0800, data=ip))


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
                    self.send(arp_frame(2, self.mac, a["tpa"], a["sha"], a["spa"]))
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
        c_sock.send(udp_frame(eth0_mac, client_mac, "198.18.0.10", VIP, 40000, 53))
        f = pylvs.expect(lambda fr: _ip_is(fr, "198.18.0.10", VIP))
        assert f[0:6] == port.mac and f[6:12] == port.kernel_mac and f[22] == 63  # forwarded: TTL - 1
        # pylvs -> real server, still from the client's address (rp_filter off on the TAP lets it in)
        port.send(udp_frame(port.kernel_mac, port.mac, "198.18.0.10", RIPS[0], 40000, 5353))
        f = server.expect(lambda fr: _ip_is(fr, "198.18.0.10", RIPS[0]))
        assert f[0:6] == rs_mac and f[6:12] == eth1_mac
        # the real server's reply to the client: steered into the TAP by the `from RIP` rule, not to eth0
        r_sock.send(udp_frame(eth1_mac, rs_mac, RIPS[0], "198.18.0.10", 5353, 40000))
        f = pylvs.expect(lambda fr: _ip_is(fr, RIPS[0], "198.18.0.10"))
        assert f[0:6] == port.mac
        # pylvs's rewritten reply VIP -> client: out of eth0 to the client
        port.send(udp_frame(port.kernel_mac, port.mac, VIP, "198.18.0.10", 53, 40000))
        f = client.expect(lambda fr: _ip_is(fr, VIP, "198.18.0.10"))
        assert f[0:6] == client_mac and f[6:12] == eth0_mac
    finally:
        c_sock.close()
        r_sock.close()
        applied.undo()
        port.close()
