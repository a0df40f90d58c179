"""The host recipe as code: what the kernel around pylvs must (not) do, applied and undone.

``plan(config)`` lists :class:`Step` objects: ``describe()`` (the shell equivalent, for ``pylvs host-setup``),
``apply()`` (pyroute2 netlink, /proc/sys, ethtool ioctls), ``undo()``.  ``apply(steps)`` is all or nothing:
when a step fails, what was done so far is undone, including the part of the failing step that succeeded
(an :class:`Offloads` step records each feature as it changes it), and the parameters the kernel changes
along with ``ip_forward`` are restored too (:class:`IpForward`).  Its :class:`Applied` undoes in reverse
order, never raising, leaving pre-existing entries alone.  What it cannot take back: turning ip_forward
on also turns LRO off on every device (``dev_disable_lro``), which no later write turns on again (LRO on
a forwarding host is wrong anyway); an undo the kernel refuses is logged, and the rest is still undone.

**driver = "tap"** (pylvs is a host behind its TAP; the kernel routes in front of it):

- ``host_address`` on the TAP (required); VIP/32 and FULLNAT LIP/32 routed via pylvs's address there;
- ``ip neigh add proxy VIP dev X`` on each kernel interface whose subnet holds a VIP/LIP, for on-link
  clients/servers.  net/ipv4/arp.c ``arp_process`` answers for a pneigh entry only if forwarding is on
  (IN_DEV_FORWARD) and the target's route is RTN_UNICAST via another device (``rt->dst.dev != dev``: ours
  goes to the TAP), and answers a broadcast request after a random delay up to ``proxy_delay`` (0.8 s,
  ``pneigh_enqueue``): set to 0;
- NAT real servers: ``ip rule add from RIP/32 lookup T``, table T ``default via <pylvs> dev TAP``: their
  replies go to the client, and the main table would route them straight out.  All they send through the
  director goes to pylvs (as with pylvs as their gateway on AF_PACKET); the local table (priority 0) first;
- ``ip_forward=1``; ``rp_filter=0`` on ``all`` and the TAP (the kernel uses max(all, device)): pylvs sends
  from addresses routed elsewhere (the client's, NAT inbound), which strict mode only passes while some
  route back via the TAP happens to exist (for client -> RIP, the rule above);
- DR is an error: it only rewrites the destination MAC, and the kernel behind the TAP routes by IP.

**driver = "afpacket"** (pylvs owns its addresses itself; the kernel sees the same frames):

- ``ip_forward=0``, or the kernel forwards a copy of what pylvs forwards.  A host that must forward other
  traffic can instead drop VIP/LIP traffic in nftables: a ``netdev`` ingress chain (``nft add table netdev
  pylvs; nft add chain netdev pylvs in '{ type filter hook ingress device eth0 priority 0; }'; nft add rule
  netdev pylvs in ip daddr { VIP, LIP } drop``; AF_PACKET taps run before that hook in
  ``__netif_receive_skb_core``), or an ``inet filter forward`` drop rule for them;
- GRO and LRO off: merged super-frames exceed the MTU and cannot be forwarded as they are.

Both: no VIP, LIP or pylvs address may be a kernel address (checked when planning): the kernel would answer
ARP and connections for it too, or deliver a VIP locally instead of to pylvs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Mapping, Sequence

from pylvs.io import ethtool, sysctl

log = logging.getLogger("pylvs.hostsetup")

#: errors meaning "already gone" on undo (a TAP closed first takes its routes and addresses with it)
_GONE = {errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL}


class HostSetupError(Exception):
    """The host recipe cannot be planned or applied: a clear, user-facing reason."""

    code: int | None = None  # an errno, where one applies


def _errno(e: BaseException) -> int | None:  # pyroute2's NetlinkError has .code, OSError .errno
    return getattr(e, "code", None) or getattr(e, "errno", None)


def _ifindex(ipr, name: str) -> int:
    idx = ipr.link_lookup(ifname=name)
    if not idx:
        e = HostSetupError(f"no interface {name!r} in this network namespace")
        e.code = errno.ENODEV  # on undo: the device (a closed TAP) took its entries with it
        raise e
    return idx[0]


def _iproute():  # imported late: describe() and plan() with injected state need no netlink
    from pyroute2 import IPRoute
    return IPRoute()


class Step:
    """One change to the host.  ``why`` is printed as a comment above the command by :func:`describe`.

    ``undo()`` is also called after a failed ``apply()``: it must take back exactly what got done (nothing,
    if nothing did)."""

    why = ""

    def describe(self) -> str:  # the equivalent shell command
        raise NotImplementedError

    def apply(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        raise NotImplementedError


@dataclass
class Sysctl(Step):
    #: the sysctl(8) name (pylvs/io/sysctl.py): a dot inside an interface name is written '/', as in
    #: "net.ipv4.conf.eth0/5.rp_filter"; build it with ``sysctl.key("net.ipv4.conf", ifname, "rp_filter")``
    name: str
    value: str
    why: str = ""
    _old: str | None = field(default=None, init=False)

    def describe(self) -> str:
        return f"sysctl -w {self.name}={self.value}"

    def apply(self) -> None:
        old = sysctl.read(self.name)
        if old != self.value:
            sysctl.write(self.name, self.value)
            self._old = old

    def undo(self) -> bool:
        """Put the old value back; True if it was written (False: nothing to undo, or changed since)."""
        old, self._old = self._old, None
        if old is None:
            return False
        if sysctl.read(self.name) != self.value:  # changed by someone else since: theirs now
            log.info("%s changed since setup; left as it is", self.name)
            return False
        sysctl.write(self.name, old)
        return True


class IpForward(Sysctl):
    """``net.ipv4.ip_forward`` and what the kernel changes along with it.

    ip_forward is ``conf/all/forwarding``; when its value changes, ``inet_forward_change``
    (net/ipv4/devinet.c) sets ``conf/<every interface>/forwarding`` and ``conf/default/forwarding`` to it
    and ``conf/all/accept_redirects`` to its opposite (and, turning it on, LRO off on every device).
    Writing the old value back propagates again, which restores all of them as long as they agreed with
    ip_forward before, the usual case.  Those that were set individually to something else are recorded
    here before the change and written back after undoing it (unless changed by someone else since:
    theirs then).  Interfaces created since are left with what the kernel gives them."""

    NAME = "net.ipv4.ip_forward"

    def __init__(self, value: str, why: str = "") -> None:
        super().__init__(self.NAME, value, why)
        self._side_before: dict[str, str] = {}
        self._side_after: dict[str, str] = {}

    @staticmethod
    def side_effects() -> dict[str, str]:
        """The parameters the kernel rewrites when ip_forward changes, with their current values."""
        names = [sysctl.key("net.ipv4.conf", dev, "forwarding")
                 for dev in sorted(os.listdir(sysctl.path("net.ipv4.conf"))) if dev != "all"]
        names.append("net.ipv4.conf.all.accept_redirects")
        out = {}
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # an interface that went away meanwhile
                out[name] = sysctl.read(name)
        return out

    def apply(self) -> None:
        before = self.side_effects()
        super().apply()
        if self._old is not None:
            self._side_before, self._side_after = before, self.side_effects()

    def undo(self) -> bool:
        before, after = self._side_before, self._side_after
        self._side_before, self._side_after = {}, {}
        current = self.side_effects() if before else {}
        if not super().undo():  # not ours to restore: whoever changed ip_forward has propagated theirs
            return False
        for name, old in before.items():
            if name not in current:  # the interface is gone
                continue
            want = old if current[name] == after.get(name) else current[name]  # changed since: theirs
            with contextlib.suppress(FileNotFoundError):
                if sysctl.read(name) != want:
                    sysctl.write(name, want)
        return True


@dataclass
class Offloads(Step):
    ifname: str
    settings: dict[str, bool]
    why: str = ""
    _old: dict[str, bool] = field(default_factory=dict, init=False)

    def describe(self) -> str:
        flags = " ".join(f"{k} {'on' if v else 'off'}" for k, v in self.settings.items())
        return f"ethtool -K {self.ifname} {flags}"

    def apply(self) -> None:
        try:
            self._old = ethtool.set_offloads(self.ifname, **self.settings)
        except ethtool.OffloadError as e:
            self._old = dict(e.changed)  # one ioctl per feature: those before the failing one are changed
            raise

    def undo(self) -> None:
        old, self._old = self._old, {}
        if old:
            ethtool.set_offloads(self.ifname, **old)


class _Netlink(Step):
    """An entry ``apply`` adds and ``undo`` deletes, unless it was there before (then it is not ours)."""

    _added = False

    def _request(self, ipr, cmd: str) -> None:
        raise NotImplementedError

    def _present(self, ipr) -> bool:  # looked up first where "add" does not report EEXIST
        return False

    def _on_eexist(self, ipr) -> None:  # the same entry exists already: fine unless overridden
        pass

    def apply(self) -> None:
        with _iproute() as ipr:
            if self._present(ipr):
                return
            try:
                self._request(ipr, "add")
            except Exception as e:
                if _errno(e) != errno.EEXIST:
                    raise
                self._on_eexist(ipr)
                return
        self._added = True

    def undo(self) -> None:
        if self._added:
            self._added = False
            with _iproute() as ipr:
                self._request(ipr, "del")


@dataclass
class AddAddress(_Netlink):
    ifname: str
    address: IPv4Interface
    why: str = ""

    def describe(self) -> str:
        return f"ip address add {self.address} dev {self.ifname}"

    def _request(self, ipr, cmd: str) -> None:
        ipr.addr(cmd, index=_ifindex(ipr, self.ifname), address=str(self.address.ip),
                 prefixlen=self.address.network.prefixlen)


@dataclass
class AddRoute(_Netlink):
    dst: IPv4Network
    via: IPv4Address
    ifname: str
    table: int | None = None  # None: main
    why: str = ""

    def describe(self) -> str:
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        table = f" table {self.table}" if self.table is not None else ""
        return f"ip route add {dst} via {self.via} dev {self.ifname}{table}"

    def _request(self, ipr, cmd: str) -> None:
        ipr.route(cmd, dst=str(self.dst), gateway=str(self.via), oif=_ifindex(ipr, self.ifname),
                  table=self.table or 254)

    def _on_eexist(self, ipr) -> None:
        # Never ours: routes via the TAP vanish with it (fib_sync_down_dev), and pylvs creates it afresh.
        # Another route for the prefix would take the traffic meant for pylvs.
        raise HostSetupError(f"a route to {self.dst} already exists in table {self.table or 'main'} (remove "
                             "it first)")


@dataclass
class AddRule(_Netlink):
    src: IPv4Network
    table: int
    priority: int
    why: str = ""

    def describe(self) -> str:
        return f"ip rule add from {self.src} lookup {self.table} priority {self.priority}"

    def _request(self, ipr, cmd: str) -> None:
        # fib_nl_newrule: EEXIST only for an identical rule (e.g. left by a killed pylvs; harmless while its
        # table is empty: a lookup in an empty table falls through to the next rule)
        ipr.rule(cmd, family=socket.AF_INET, src=str(self.src.network_address), src_len=self.src.prefixlen,
                 table=self.table, priority=self.priority)


@dataclass
class AddProxyNeighbour(_Netlink):
    address: IPv4Address
    ifname: str
    why: str = ""

    def describe(self) -> str:
        return f"ip neigh add proxy {self.address} dev {self.ifname}"

    def _request(self, ipr, cmd: str) -> None:
        from pyroute2.netlink.rtnl.ndmsg import NTF_PROXY

        ipr.neigh(cmd, dst=str(self.address), ifindex=_ifindex(ipr, self.ifname), flags=NTF_PROXY)

    def _present(self, ipr) -> bool:
        # neigh_add (net/core/neighbour.c) re-adds an existing pneigh entry without EEXIST: look first
        try:
            self._request(ipr, "get")
        except Exception as e:
            if _errno(e) != errno.ENOENT:
                raise
            return False
        return True


@dataclass
class Applied:
    """The steps that were applied, to be undone (in reverse order) at exit."""

    steps: list[Step] = field(default_factory=list)

    def undo(self) -> bool:
        """Undo everything; never raises (a failure is logged and the rest is still undone).  False if
        something could not be undone."""
        ok = True
        while self.steps:
            step = self.steps.pop()
            try:
                step.undo()
            except Exception as e:
                if _errno(e) in _GONE:  # its device is gone already, and the entry with it
                    log.debug("undo %s: already gone (%s)", step.describe(), e)
                else:
                    log.warning("host setup: could not undo `%s`: %s", step.describe(), e)
                    ok = False
        return ok


def apply(steps: Sequence[Step]) -> Applied:
    """Apply ``steps`` in order; on a failure undo what was done (the failing step's own part included)
    and raise HostSetupError naming the step."""
    done = Applied()
    for i, step in enumerate(steps):
        try:
            step.apply()
        except Exception as e:
            done.steps.append(step)  # it may have got partway: its undo() takes back what it did
            undone = done.undo()
            # NetlinkError args: (code, message); OSError has strerror
            reason = getattr(e, "strerror", None) or (e.args[1] if len(e.args) > 1 else e)
            reason = f"{reason} (needs root / CAP_NET_ADMIN)" if _errno(e) in (errno.EPERM, errno.EACCES) else reason
            after = ("everything changed up to it was undone" if undone else
                     "undoing the changes made up to it failed in part: see the warnings above")
            raise HostSetupError(f"step {i + 1}/{len(steps)} `{step.describe()}` failed: {reason} ({after})") from e
        done.steps.append(step)
        log.info("host setup: %s", step.describe())
    return done


def kernel_addresses() -> dict[str, list[IPv4Interface]]:
    """The IPv4 addresses of every interface in this network namespace, by interface name."""
    out: dict[str, list[IPv4Interface]] = {}
    try:
        with _iproute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for a in ipr.get_addr(family=socket.AF_INET):
                ip = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")  # LOCAL differs on point-to-point
                out.setdefault(names[a["index"]], []).append(IPv4Interface(f"{ip}/{a['prefixlen']}"))
    except Exception as e:
        raise HostSetupError(f"cannot read the kernel's addresses: {e}") from e
    return out


def plan(config, *, kernel_addrs: Mapping[str, Sequence[IPv4Interface]] | None = None,
         table: int = 100, rule_priority: int = 1000, offload: bool = True) -> list[Step]:
    """The steps for ``config``.  ``kernel_addrs`` (interface -> addresses) defaults to this namespace's;
    ``table`` and ``rule_priority`` are those of the NAT reply steering (tap); ``offload``: the AF_PACKET
    ports take GSO super-frames (virtio-net headers), so GRO may stay as it is."""
    taps = [i for i in config.interfaces if i.driver == "tap"]
    raws = [i for i in config.interfaces if i.driver == "afpacket"]
    if taps and raws:
        raise HostSetupError("interfaces with driver 'tap' and 'afpacket' in one config: the kernel must "
                             "forward for the first (ip_forward=1) and must not for the second")
    vips = sorted({vs.address for vs in config.virtual_servers if vs.address.version == 4})
    lips = sorted({a for vs in config.virtual_servers if vs.mode == "fullnat"
                   for a in vs.local_addresses if a.version == 4})
    nat_rips = sorted({rs.address for vs in config.virtual_servers for rs in vs.real_servers
                       if rs.mode == "nat" and rs.address.version == 4})
    ours = {a.ip: i.name for i in config.interfaces for a in i.addresses}
    kaddrs = kernel_addresses() if kernel_addrs is None else kernel_addrs
    for ifname, addrs in kaddrs.items():
        for a in addrs:
            what = ("VIP" if a.ip in vips else "LIP" if a.ip in lips else
                    f"pylvs's address on {ours[a.ip]!r}" if a.ip in ours else None)
            if what:
                raise HostSetupError(f"{a.ip} ({what}) is a kernel address on {ifname!r}: the kernel would "
                                     f"answer for it too (remove it: `ip address del {a} dev {ifname}`)")
    if not raws:
        return _plan_tap(config, taps, kaddrs, vips, lips, nat_rips, table, rule_priority)
    # LRO merges lose what segmenting again needs (the kernel turns it off on a forwarding device too); GRO's
    # super-frames are fine where pylvs takes them whole (offload), and do not fit where it does not.
    off = ({"lro": False}, "LRO merges cannot be segmented again") if offload else (
        {"gro": False, "lro": False}, "no merged super-frames (larger than the MTU) on the AF_PACKET socket "
        "without offload")
    return [Offloads(i.name, off[0], why=f"{i.name}: {off[1]}") for i in raws] + [
        IpForward("0", why="the kernel must not also forward what pylvs forwards (this also sets every "
                  "interface's forwarding, undone with it)")]


def _plan_tap(config, taps, kaddrs, vips, lips, nat_rips, table: int, prio: int) -> list[Step]:
    for vs, rs in ((vs, rs) for vs in config.virtual_servers for rs in vs.real_servers if rs.mode == "dr"):
        raise HostSetupError(f"real server {rs.address} of {vs.protocol} {vs.address}:{vs.port} uses DR, which "
                             "cannot work behind a TAP: DR only rewrites the destination MAC and the kernel "
                             "behind the TAP routes by IP address")
    for i in (i for i in taps if i.host_address is None):
        raise HostSetupError(f"interface {i.name!r} (driver tap) has no host_address: the host recipe needs "
                             "the kernel's address on the TAP, e.g. host_address = '198.18.255.1/30'")
    steps: list[Step] = []
    tap_names = {i.name for i in taps}
    for i in taps:
        steps.append(AddAddress(i.name, i.host_address, why=f"the kernel's side of the TAP {i.name}"))
        steps.append(Sysctl(sysctl.key("net.ipv4.conf", i.name, "rp_filter"), "0",
                            why="pylvs sends packets from the clients' addresses into the TAP"))
    # With several TAPs, the VIPs/LIPs and the NAT replies go to the first.  The next hop is pylvs's
    # address in host_address's subnet.
    tap = taps[0]
    gw = next(a.ip for a in tap.addresses if a.version == 4 and a.network == tap.host_address.network)
    for a in vips + lips:
        steps.append(AddRoute(IPv4Network(f"{a}/32"), gw, tap.name,
                              why=f"{'VIP' if a in vips else 'LIP'} {a} is behind the TAP"))
    if nat_rips:
        steps.append(AddRoute(IPv4Network("0.0.0.0/0"), gw, tap.name, table,
                              why=f"table {table}: NAT real servers' replies go to pylvs"))
        for rip in nat_rips:
            steps.append(AddRule(IPv4Network(f"{rip}/32"), table, prio,
                                 why=f"NAT real server {rip}: its replies are addressed to the client"))
    proxied: dict[str, None] = {}  # ordered set
    for ifname, addrs in kaddrs.items():
        for a in vips + lips:
            if ifname not in tap_names and any(a in k.network and k.network.prefixlen < 32 for k in addrs):
                steps.append(AddProxyNeighbour(a, ifname, why=f"answer ARP for {a} on {ifname}, where it is "
                                                              "on-link"))
                proxied[ifname] = None
    for ifname in proxied:
        steps.append(Sysctl(sysctl.key("net.ipv4.neigh", ifname, "proxy_delay"), "0",
                            why=f"{ifname}: answer proxy ARP at once, not after up to 0.8 s"))
    steps.append(Sysctl("net.ipv4.conf.all.rp_filter", "0",
                        why="reverse-path filtering uses max(all, device)"))
    steps.append(IpForward("1", why="the kernel routes between its interfaces and the TAP (last: once all is in "
                                    "place; this also sets every interface's forwarding, undone with it, and turns LRO off)"))
    return steps


def describe(config, **kw) -> str:
    """The whole recipe for ``config`` as shell commands (with a comment saying why above each)."""
    steps = plan(config, **kw)
    lines = [f"# pylvs host recipe for {config.file} ({len(steps)} steps; `pylvs run --host-setup` applies "
             "it at start and undoes it at exit)"]
    for s in steps:
        if s.why:
            lines.append(f"# {s.why}")
        lines.append(s.describe())
    return "\n".join(lines)
