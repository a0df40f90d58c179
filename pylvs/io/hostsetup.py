"""The host recipe as code: what the kernel around pylvs must (not) do, applied and undone.

``plan(config)`` lists :class:`Step` objects: ``describe()`` (the shell equivalent, for ``pylvs host-setup``),
``apply()`` (pyroute2 netlink, /proc/sys, ethtool ioctls), ``undo()``.  ``apply(steps)`` is all or nothing;
its :class:`Applied` undoes in reverse order, never raising, leaving pre-existing entries alone.

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

import errno
import logging
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Mapping, Sequence

from pylvs.io import ethtool

log = logging.getLogger("pylvs.hostsetup")

PROC_SYS = "/proc/sys"
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
    """One change to the host.  ``why`` is printed as a comment above the command by :func:`describe`."""

    why = ""

    def describe(self) -> str:  # the equivalent shell command
        raise NotImplementedError

    def apply(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        raise NotImplementedError


@dataclass
class Sysctl(Step):
    #: path components under /proc/sys, e.g. ("net", "ipv4", "conf", "eth0.5", "rp_filter")
    parts: tuple[str, ...]
    value: str
    why: str = ""
    _old: str | None = field(default=None, init=False)

    @property
    def path(self) -> str:
        return "/".join((PROC_SYS,) + self.parts)

    def describe(self) -> str:
        # sysctl(8) separates with dots and spells a dot inside a component as '/'
        return f"sysctl -w {'.'.join(p.replace('.', '/') for p in self.parts)}={self.value}"

    def _read(self) -> str:
        with open(self.path) as f:
            return f.read().strip()

    def apply(self) -> None:
        old = self._read()
        if old != self.value:
            with open(self.path, "w") as f:
                f.write(self.value)
            self._old = old

    def undo(self) -> None:
        old, self._old = self._old, None
        if old is None:
            return
        if self._read() != self.value:  # changed by someone else since: theirs now
            log.info("%s changed since setup; left as it is", self.path)
        else:
            with open(self.path, "w") as f:
                f.write(old)


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
        self._old = ethtool.set_offloads(self.ifname, **self.settings)

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

    def undo(self) -> None:
        """Undo everything; never raises (a failure is logged and the rest is still undone)."""
        while self.steps:
            step = self.steps.pop()
            try:
                step.undo()
            except Exception as e:
                if _errno(e) in _GONE:  # its device is gone already, and the entry with it
                    log.debug("undo %s: already gone (%s)", step.describe(), e)
                else:
                    log.warning("host setup: could not undo `%s`: %s", step.describe(), e)


def apply(steps: Sequence[Step]) -> Applied:
    """Apply ``steps`` in order; on a failure undo what was done and raise HostSetupError naming the step."""
    done = Applied()
    for i, step in enumerate(steps):
        try:
            step.apply()
        except Exception as e:
            done.undo()
            # NetlinkError args: (code, message); OSError has strerror
            reason = getattr(e, "strerror", None) or (e.args[1] if len(e.args) > 1 else e)
            reason = f"{reason} (needs root / CAP_NET_ADMIN)" if _errno(e) in (errno.EPERM, errno.EACCES) else reason
            raise HostSetupError(f"step {i + 1}/{len(steps)} `{step.describe()}` failed: {reason} "
                                 "(the steps before it were undone)") from e
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
         table: int = 100, rule_priority: int = 1000) -> list[Step]:
    """The steps for ``config``.  ``kernel_addrs`` (interface -> addresses) defaults to this namespace's;
    ``table`` and ``rule_priority`` are those of the NAT reply steering (tap)."""
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
    return [Offloads(i.name, {"gro": False, "lro": False}, why=f"{i.name}: no merged super-frames (larger "
                     "than the MTU) on the AF_PACKET socket") for i in raws] + [
        Sysctl(("net", "ipv4", "ip_forward"), "0", why="the kernel must not also forward what pylvs forwards")]


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
        steps.append(Sysctl(("net", "ipv4", "conf", i.name, "rp_filter"), "0",
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
        steps.append(Sysctl(("net", "ipv4", "neigh", ifname, "proxy_delay"), "0",
                            why=f"{ifname}: answer proxy ARP at once, not after up to 0.8 s"))
    steps.append(Sysctl(("net", "ipv4", "conf", "all", "rp_filter"), "0",
                        why="reverse-path filtering uses max(all, device)"))
    steps.append(Sysctl(("net", "ipv4", "ip_forward"), "1",
                        why="the kernel routes between its interfaces and the TAP (last: once all is in place)"))
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
