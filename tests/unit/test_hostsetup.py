"""The host recipe (pylvs/io/hostsetup.py) and the TAP port's error paths (pylvs/io/tap.py), unprivileged.

plan()/describe() on the examples with the kernel's addresses injected, the checks plan() makes, apply()'s
rollback and Applied.undo() with fake steps, the Sysctl and IpForward steps on a fake /proc/sys (with the
kernel's ip_forward propagation played by the test), the Offloads step on a fake NIC whose ioctl for one
feature fails, TapPort's error messages.  The same against a real kernel, in a namespace:
tests/integration/test_tap_hostsetup.py.
"""

from __future__ import annotations

import errno
import logging
import os
import tomllib
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from pylvs.config import load_config, parse_config
from pylvs.io import ethtool, hostsetup, sysctl, tap, tuntap
from pylvs.io.hostsetup import HostSetupError
from pylvs.io.port import PortError

EX = Path(__file__).resolve().parents[2] / "examples"
LAB_KERNEL = {"lo": [IPv4Interface("127.0.0.1/8")], "eth0": [IPv4Interface("198.18.0.1/24")],
              "eth1": [IPv4Interface("198.19.0.1/24")]}


@pytest.fixture(autouse=True)
def _pylvs_logs_reach_caplog(monkeypatch):
    # pylvs.logsetup.setup_logging (run by CLI tests earlier in the session) stops propagation to the root
    # logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("pylvs"), "propagate", True)


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
    "ethtool -K eth0 lro off",
    "ethtool -K eth1 lro off",
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


def test_plan_without_offload_turns_gro_off():
    """Without virtio-net headers a GRO super-frame does not fit the AF_PACKET slot: GRO goes off too."""
    cfg = load_config(EX / "nat.toml")
    steps = hostsetup.plan(cfg, kernel_addrs={"lo": LAB_KERNEL["lo"]}, offload=False)
    assert [s.describe() for s in steps] == [
        "ethtool -K eth0 gro off lro off", "ethtool -K eth1 gro off lro off", "sysctl -w net.ipv4.ip_forward=0"]
    assert "without offload" in steps[0].why


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
    assert "(everything changed up to it was undone)" in msg
    # the failing step is undone too (it may have got partway), then the others in reverse
    assert log == [("apply", "a"), ("apply", "b"), ("undo", "c"), ("undo", "b"), ("undo", "a")]


def test_apply_says_when_rollback_failed(caplog):
    log: list = []
    steps = [FakeStep("a", log, fail_undo=RuntimeError("stuck")), FakeStep("b", log, fail_apply=True)]
    with pytest.raises(HostSetupError, match=r"failed in part: see the warnings above\)$"):
        hostsetup.apply(steps)
    assert "host setup: could not undo `fake a`: stuck" in caplog.text


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


@pytest.fixture
def proc(tmp_path, monkeypatch):
    """A fake /proc/sys for pylvs.io.sysctl."""
    monkeypatch.setattr(sysctl, "PROC_SYS", str(tmp_path))
    return tmp_path


def put(proc: Path, rel: str, value: str) -> Path:
    f = proc / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(value + "\n")
    return f


def test_sysctl_step(proc):
    f = put(proc, "net/ipv4/conf/eth0.5/rp_filter", "1")
    s = hostsetup.Sysctl(sysctl.key("net.ipv4.conf", "eth0.5", "rp_filter"), "0")
    assert s.describe() == "sysctl -w net.ipv4.conf.eth0/5.rp_filter=0"
    s.apply()
    assert f.read_text() == "0"
    assert s.undo() is True
    assert f.read_text() == "1"
    s.apply()
    f.write_text("2")  # someone else changed it meanwhile: theirs now
    assert s.undo() is False
    assert f.read_text() == "2"
    f.write_text("0")  # already the wanted value: nothing to undo
    s.apply()
    assert s.undo() is False
    assert f.read_text() == "0"


def test_plan_escapes_dotted_interface_names():
    kernel = {"eth0.5": [IPv4Interface("198.18.0.1/24")]}
    cmds = [s.describe() for s in hostsetup.plan(load_config(EX / "tap-nat.toml"), kernel_addrs=kernel)]
    assert "ip neigh add proxy 198.18.0.100 dev eth0.5" in cmds
    assert "sysctl -w net.ipv4.neigh.eth0/5.proxy_delay=0" in cmds


# --------------------------------------------------------------------------- unit: ip_forward side effects

CONF = "net/ipv4/conf"


@pytest.fixture
def fwd_kernel(proc, monkeypatch):
    """A fake /proc/sys with ip_forward=0, where eth1 forwards by itself (set individually), and the kernel's
    inet_forward_change (net/ipv4/devinet.c) played on every change of ip_forward."""
    put(proc, "net/ipv4/ip_forward", "0")
    for dev in ("all", "default", "lo", "eth0"):
        put(proc, f"{CONF}/{dev}/forwarding", "0")
    put(proc, f"{CONF}/eth1/forwarding", "1")
    put(proc, f"{CONF}/all/accept_redirects", "1")
    real = sysctl.write

    def write(name, value):
        old = real(name, value)
        if sysctl.path(name) in (sysctl.path("net.ipv4.ip_forward"), sysctl.path("net.ipv4.conf.all.forwarding")) \
                and str(value) != old:
            on = str(value)
            (proc / "net/ipv4/ip_forward").write_text(on)
            for dev in os.listdir(proc / CONF):
                (proc / CONF / dev / "forwarding").write_text(on)
            (proc / CONF / "all" / "accept_redirects").write_text("0" if on == "1" else "1")
        return old
    monkeypatch.setattr(sysctl, "write", write)
    return proc


def snapshot(proc: Path) -> dict[str, str]:
    out = {"ip_forward": (proc / "net/ipv4/ip_forward").read_text().strip()}
    for f in sorted((proc / CONF).glob("*/*")):
        out[f"{f.parent.name}.{f.name}"] = f.read_text().strip()
    return out


def test_ip_forward_undo_restores_what_the_kernel_changed_with_it(fwd_kernel):
    before = snapshot(fwd_kernel)
    step = hostsetup.IpForward("1")
    assert step.describe() == "sysctl -w net.ipv4.ip_forward=1"
    step.apply()
    after = snapshot(fwd_kernel)
    assert after["eth0.forwarding"] == after["default.forwarding"] == "1"
    assert after["all.accept_redirects"] == "0"
    assert step.undo() is True
    # writing 0 back set eth1 to 0 too; it forwarded before on its own, and does again
    assert snapshot(fwd_kernel) == before
    assert step.undo() is False  # once


def test_ip_forward_undo_keeps_later_changes_of_others(fwd_kernel):
    step = hostsetup.IpForward("1")
    step.apply()
    (fwd_kernel / CONF / "lo" / "forwarding").write_text("0")  # someone else, after us: theirs
    (fwd_kernel / CONF / "eth9").mkdir()  # an interface made since: the kernel gives it the new value
    (fwd_kernel / CONF / "eth9" / "forwarding").write_text("1")
    step.undo()
    now = snapshot(fwd_kernel)
    assert now["ip_forward"] == "0" and now["eth1.forwarding"] == "1" and now["lo.forwarding"] == "0"
    assert now["eth9.forwarding"] == "0"  # propagated by the undo, like any interface that followed


def test_ip_forward_gone_interface_and_foreign_change(fwd_kernel):
    step = hostsetup.IpForward("1")
    step.apply()
    for f in (fwd_kernel / CONF / "eth1").iterdir():  # eth1 deleted meanwhile
        f.unlink()
    (fwd_kernel / CONF / "eth1").rmdir()
    step.undo()  # no error
    assert snapshot(fwd_kernel)["ip_forward"] == "0"
    step = hostsetup.IpForward("1")
    step.apply()
    sysctl.write("net.ipv4.ip_forward", "2")  # someone else set it since: neither it nor the rest is ours
    state = snapshot(fwd_kernel)
    assert step.undo() is False and snapshot(fwd_kernel) == state


def test_ip_forward_unchanged_touches_nothing(fwd_kernel):
    before = snapshot(fwd_kernel)
    step = hostsetup.IpForward("0")  # already 0
    step.apply()
    assert step.undo() is False and snapshot(fwd_kernel) == before


def test_ip_forward_steps_are_planned_as_such():
    for name, kernel in (("tap-nat.toml", LAB_KERNEL), ("nat.toml", {})):
        steps = hostsetup.plan(load_config(EX / name), kernel_addrs=kernel)
        fwd = [s for s in steps if s.describe().startswith("sysctl -w net.ipv4.ip_forward=")]
        assert len(fwd) == 1 and isinstance(fwd[0], hostsetup.IpForward)
        assert "every interface's forwarding" in fwd[0].why


# --------------------------------------------------------------------------- unit: offloads, partial failure

class FakeNic:
    """A NIC behind ethtool's ioctl: every feature on; setting ``broken`` fails (EOPNOTSUPP)."""

    def __init__(self, broken: str | None = None) -> None:
        self.state = dict.fromkeys(("tso", "gso", "gro", "tx_csum", "lro"), True)
        self.broken = broken
        self.sets: list[str] = []

    def _set(self, name: str, on: bool) -> None:
        if name == self.broken:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        self.sets.append(name)
        self.state[name] = on

    def ioctl(self, sock, ifname, cmd, data=0):
        assert ifname == "eth0"
        for name, (get, set_) in ethtool._GET_SET.items():
            if cmd == get:
                return int(self.state[name])
            if cmd == set_:
                self._set(name, bool(data))
                return data
        if cmd == ethtool.ETHTOOL_GFLAGS:
            return ethtool.ETH_FLAG_LRO if self.state["lro"] else 0
        if cmd == ethtool.ETHTOOL_SFLAGS:
            self._set("lro", bool(data & ethtool.ETH_FLAG_LRO))
            return data
        raise AssertionError(f"unexpected ethtool command {cmd:#x}")


def test_set_offloads_error_carries_what_was_changed(monkeypatch):
    nic = FakeNic(broken="gro")
    monkeypatch.setattr(ethtool, "_ioctl", nic.ioctl)
    with pytest.raises(ethtool.OffloadError) as ei:
        ethtool.set_offloads("eth0", tso=False, gso=False, gro=False, lro=False)
    e = ei.value
    assert e.feature == "gro" and e.errno == errno.EOPNOTSUPP and "eth0: cannot set gro" in str(e)
    assert e.changed == {"tso": True, "gso": True}  # changed before gro, and left so
    assert nic.state == {"tso": False, "gso": False, "gro": True, "tx_csum": True, "lro": True}
    assert ethtool.set_offloads("eth0", **e.changed) == {"tso": False, "gso": False}
    with pytest.raises(ValueError, match="unknown offload"):
        ethtool.set_offloads("eth0", gro_hw=False)


@pytest.mark.parametrize("broken", ["gso", "lro"])
def test_offloads_step_partial_failure_is_undone(monkeypatch, broken):
    """GRO changed before the failing feature is put back (it used to stay off, the change unrecorded)."""
    nic = FakeNic(broken=broken)
    monkeypatch.setattr(ethtool, "_ioctl", nic.ioctl)
    log: list = []
    steps = [FakeStep("a", log), hostsetup.Offloads("eth0", {"gro": False, "tso": False, broken: False})]
    with pytest.raises(HostSetupError) as ei:
        hostsetup.apply(steps)
    msg = str(ei.value)
    assert f"step 2/2 `ethtool -K eth0 gro off tso off {broken} off` failed: eth0: cannot set {broken}" in msg
    assert "(everything changed up to it was undone)" in msg
    assert nic.sets == ["gro", "tso", "gro", "tso"]  # off, off, then back on
    assert all(nic.state.values())
    assert log == [("apply", "a"), ("undo", "a")]


def test_offloads_step_records_each_change(monkeypatch):
    nic = FakeNic(broken="lro")
    monkeypatch.setattr(ethtool, "_ioctl", nic.ioctl)
    step = hostsetup.Offloads("eth0", {"gro": False, "lro": False})
    with pytest.raises(ethtool.OffloadError):
        step.apply()
    assert not nic.state["gro"]
    step.undo()
    assert nic.state["gro"]
    step.undo()  # nothing left to undo
    assert nic.sets == ["gro", "gro"]


# --------------------------------------------------------------------------- unit: TapPort errors

def test_derived_mac():
    m = tap.derived_mac("pylvs0")
    assert m == tap.derived_mac("pylvs0") != tap.derived_mac("pylvs1")
    assert len(m) == 6 and m[0] == 0x02  # locally administered, unicast


def test_tap_missing_dev(monkeypatch):
    monkeypatch.setattr(tuntap, "TUN_DEV", "/nonexistent/net/tun")
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
    monkeypatch.setattr(tuntap, "TUN_DEV", "/dev/null")  # exists; the fake below fails first

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

    r, w = os.pipe()

    class FakeDev:  # what the kernel would hand back if it picked pylvs's MAC for the netdev
        name, hwaddr = "pylvs0", iface.mac

        def fileno(self):
            return r

        def close(self):
            closed.append(True)
    monkeypatch.setattr(tuntap, "TUN_DEV", "/dev/null")
    monkeypatch.setattr(pytun, "TunTapDevice", lambda **kw: FakeDev())
    with pytest.raises(PortError, match="equals the kernel side's MAC"):
        tap.TapPort.open(iface)
    assert closed == [True]  # the half-made device is released
    os.close(r)
    os.close(w)


def test_tap_open_asks_for_an_exclusive_new_device(monkeypatch):
    pytun = pytest.importorskip("pytun")
    seen = {}

    def fake(**kw):
        seen.update(kw)
        raise pytun.Error(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(tuntap, "TUN_DEV", "/dev/null")
    monkeypatch.setattr(pytun, "TunTapDevice", fake)
    with pytest.raises(PortError):
        tap.TapPort.open(load_config(EX / "tap-nat.toml").interfaces[0])
    assert seen["name"] == "pylvs0"
    # with a virtio-net header before each frame (offload, the default) ...
    assert seen["flags"] == pytun.IFF_TAP | pytun.IFF_NO_PI | pytun.IFF_TUN_EXCL | tuntap.IFF_VNET_HDR
    # ... and without
    with pytest.raises(PortError):
        tap.TapPort.open(load_config(EX / "tap-nat.toml").interfaces[0], offload=False)
    assert seen["flags"] == pytun.IFF_TAP | pytun.IFF_NO_PI | pytun.IFF_TUN_EXCL


def test_tap_without_pytun(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pytun(name, *a, **kw):
        if name == "pytun":
            raise ImportError("No module named 'pytun'")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_pytun)
    with pytest.raises(PortError, match=r"^TAP pylvs0: needs python-pytun \(pip install python-pytun\)$"):
        tap.TapPort.open(load_config(EX / "tap-nat.toml").interfaces[0])
