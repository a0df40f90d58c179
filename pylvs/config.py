"""TOML configuration loader with strict validation.

The file is checked completely before anything is built from it: an operator
should learn about a typo (``wieght``) or an impossible setup (DR with port
mapping, FULLNAT without local addresses) at start-up, with the file, the key
path and the reason, not later as silently dropped packets.

Everything here is immutable plain data (frozen dataclasses, ``ipaddress``
objects, MACs as 6-byte ``bytes``); the runtime builds its own mutable state
(``pylvs.core.dest.Dest`` etc.) from it.

Mode resolution (IPVS has the mode per real server, FULLNAT is per service):
``mode_override`` (CLI ``--mode``) replaces the file's top-level ``mode`` as the
default; a service's own ``mode`` wins for that service; a real server's
``mode`` wins for that server.  Every mode-dependent check runs on the
resolved (effective) mode.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, Mapping

from pylvs.configread import REQUIRED, ConfigError, IPAddress, Reader, is_int, read_ip, read_mac, type_name

__all__ = [
    "ConfigError", "load_config", "parse_config",
    "Config", "Interface", "Route", "Neighbor", "RealServer", "VirtualServer", "Table",
    "MODES", "RS_MODES", "SCHEDULERS", "PROTOCOLS", "DRIVERS", "TCP_STATES", "DEFAULT_TIMEOUTS",
    "HealthCheck", "SorryServer", "Control", "CHECK_TYPES", "ON_FAILURE", "RS_STATES",
]


MODES = ("nat", "dr", "tun", "fullnat")
#: FULLNAT rewrites the source too, so it is a property of the whole service.
RS_MODES = ("nat", "dr", "tun")
SCHEDULERS = ("rr", "wrr", "sh", "lc", "wlc", "mh")
PROTOCOLS = ("tcp", "udp")
DRIVERS = ("afpacket", "tap")
ICMP_ECHO = ("reply", "drop")
CHECK_TYPES = ("tcp", "http", "udp", "exec", "none")
#: what a failed health check does to a server (keepalived: ``inhibit_on_failure`` = quiesce, else remove)
ON_FAILURE = ("quiesce", "remove")
#: a real server's administrative state (HAProxy's ready / drain / maint)
RS_STATES = ("ready", "drain", "maint")
DEFAULT_CTL_SOCKET = "/run/pylvs/pylvs.sock"
DEFAULT_METRICS = "127.0.0.1:9470"
TCP_STATES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")
#: IPVS defaults (ip_vs_proto_tcp.c / ip_vs_proto_udp.c), in seconds.
DEFAULT_TIMEOUTS: dict[str, float] = {
    "none": 2.0, "established": 900.0, "syn_sent": 120.0, "syn_recv": 60.0, "fin_wait": 120.0,
    "time_wait": 120.0, "close": 10.0, "close_wait": 60.0, "last_ack": 30.0, "listen": 120.0,
    "synack": 120.0, "udp": 300.0, "icmp": 60.0,
}


# --------------------------------------------------------------------------- data

@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: bytes | None
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    mtu: int = 1500
    driver: str = "afpacket"
    #: driver "tap" only: the kernel's address on the TAP device (the host side of the link; pylvs's
    #: own are ``addresses``).  The host recipe (pylvs/io/hostsetup.py) puts it there and routes the
    #: VIPs/LIPs via pylvs's address.
    host_address: IPv4Interface | None = None


@dataclass(frozen=True, slots=True)
class Route:
    prefix: IPv4Network | IPv6Network
    via: IPAddress | None
    interface: str


@dataclass(frozen=True, slots=True)
class Neighbor:
    address: IPAddress
    mac: bytes
    interface: str


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One server's check (keepalived TCP_CHECK / HTTP_GET / MISC_CHECK, plus a UDP send/expect).

    ``port`` None = the real server's port.  ``status`` is the inclusive range of good HTTP statuses;
    ``body`` an optional substring the HTTP body must contain.  ``send``/``expect`` are the UDP payload
    and the substring the answer must contain (empty expect: any answer).  ``command`` is run without a
    shell, with ``{address}`` and ``{port}`` substituted; exit status 0 means up."""

    type: str = "tcp"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    on_failure: str = "quiesce"
    port: int | None = None
    path: str = "/"
    status: tuple[int, int] = (200, 399)
    body: str | None = None
    host: str | None = None
    send: str = ""
    expect: str = ""
    command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SorryServer:
    """keepalived ``sorry_server``: takes new flows while no real server of the service can."""

    address: IPAddress
    port: int
    mode: str = "nat"


@dataclass(frozen=True, slots=True)
class RealServer:
    address: IPAddress
    port: int
    weight: int = 1
    #: effective mode (already resolved by the loader)
    mode: str = "nat"
    #: the administrative state: drain = no new flows, existing ones go on; maint = as if removed
    #: (its flows follow the service's expire_nodest_conn), health checks paused
    state: str = "ready"
    #: the effective check (the server's own, else the service's); None = not checked
    health_check: HealthCheck | None = None


@dataclass(frozen=True, slots=True)
class VirtualServer:
    address: IPAddress
    port: int
    protocol: str
    scheduler: str = "wlc"
    sh_port: bool = False
    sh_fallback: bool = False
    #: effective mode (already resolved by the loader)
    mode: str = "nat"
    persistence_timeout: float = 0
    persistence_netmask: int = 32
    local_addresses: tuple[IPAddress, ...] = ()
    local_port_range: tuple[int, int] = (1024, 65535)
    toa: bool = True
    toa_kind: int = 254
    toa_on_syn: bool = False
    expire_nodest_conn: bool = False
    real_servers: tuple[RealServer, ...] = ()
    sorry_server: SorryServer | None = None
    #: the service-level default check as written (each RealServer carries its effective one)
    health_check: HealthCheck | None = None


@dataclass(frozen=True, slots=True)
class Table:
    max_connections: int = 1048576
    sloppy_tcp: bool = False
    icmp_echo: str = "reply"
    neighbor_queue: int = 64


@dataclass(frozen=True, slots=True)
class Control:
    """The runtime control socket (``pylvs ctl``) and the Prometheus endpoint; "" disables either."""

    socket: str = DEFAULT_CTL_SOCKET
    metrics: str = DEFAULT_METRICS


@dataclass(frozen=True, slots=True)
class Config:
    file: str
    #: the resolved default mode (override, else the file's, else "nat")
    mode: str
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    virtual_servers: tuple[VirtualServer, ...] = ()
    #: every key of DEFAULT_TIMEOUTS, with the file's [timeouts] merged in
    timeouts: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    table: Table = field(default_factory=Table)
    control: Control = field(default_factory=Control)


# --------------------------------------------------------------------------- keys

_TOP_KEYS = ("mode", "interface", "route", "neighbor", "virtual_server", "timeouts", "table", "control")
_IFACE_KEYS = ("name", "mac", "addresses", "mtu", "driver", "host_address")
_ROUTE_KEYS = ("prefix", "via", "interface")
_NEIGH_KEYS = ("address", "mac", "interface")
_VS_KEYS = ("address", "port", "protocol", "scheduler", "sh_port", "sh_fallback", "mode",
            "persistence_timeout", "persistence_netmask", "local_addresses", "local_port_range",
            "toa", "toa_kind", "toa_on_syn", "expire_nodest_conn", "real_server", "sorry_server",
            "health_check")
_RS_KEYS = ("address", "port", "weight", "mode", "state", "health_check")
_CHECK_KEYS = ("type", "interval", "timeout", "rise", "fall", "on_failure", "port", "path", "status", "body",
               "host", "send", "expect", "command")
#: the keys each check type reads (the others are refused, so a typo'd type cannot hide a setting)
_CHECK_TYPE_KEYS = {
    "tcp": (), "none": (),
    "http": ("path", "status", "body", "host"),
    "udp": ("send", "expect"),
    "exec": ("command",),
}
_SORRY_KEYS = ("address", "port", "mode")
_CONTROL_KEYS = ("socket", "metrics")
_TABLE_KEYS = ("max_connections", "sloppy_tcp", "icmp_echo", "neighbor_queue")

# Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are refused by the kernel.
_IFNAME_RE = re.compile(r"[^\s/]{1,15}")


def _family(version: int) -> str:
    return f"IPv{version}"


# --------------------------------------------------------------------------- sections

def _interface(file: str, path: str, data: Any) -> Interface:
    t = Reader(file, data, path, _IFACE_KEYS)
    name = t.str("name")
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise t.error("name", f"invalid interface name {name!r} (1..15 characters, no '/' or whitespace)")
    mac_s = t.str("mac", None)
    mac = None if mac_s is None else read_mac(file, t.at("mac"), mac_s)
    raw = t.array("addresses")
    if not raw:
        raise t.error("addresses", "needs at least one address with a prefix length, e.g. '198.18.0.1/24'")
    addrs: list[IPv4Interface | IPv6Interface] = []
    for i, a in enumerate(raw):
        p = f"{t.at('addresses')}[{i}]"
        if not isinstance(a, str):
            raise ConfigError(file, p, f"expected an address string like '198.18.0.1/24', got {type_name(a)}")
        # Without a length ipaddress would silently take /32, and then nothing is on-link.
        if "/" not in a:
            raise ConfigError(file, p, f"{a!r} needs a prefix length, e.g. '{a}/24'")
        try:
            ifa = ip_interface(a)
        except ValueError:
            raise ConfigError(file, p, f"invalid interface address {a!r}") from None
        net = ifa.network
        if ifa.version == 4 and net.prefixlen < 31 and ifa.ip in (net.network_address, net.broadcast_address):
            raise ConfigError(file, p, f"{a!r} is the network or broadcast address of {net}")
        if any(ifa.ip == b.ip for b in addrs):
            raise ConfigError(file, p, f"duplicate address {ifa.ip}")
        addrs.append(ifa)
    mtu = t.int("mtu", 1500, 68, 65535)
    driver = t.str("driver", "afpacket", DRIVERS)
    host = _host_address(t, t.str("host_address", None), driver, addrs)
    return Interface(name=name, mac=mac, addresses=tuple(addrs), mtu=mtu, driver=driver,
                     host_address=host)


def _host_address(t: Reader, s: str | None, driver: str,
                  addrs: list[IPv4Interface | IPv6Interface]) -> IPv4Interface | None:
    """The kernel's side of a TAP link: only a TAP has a host side, and it must be on-link with
    pylvs's own address there (the kernel routes the VIPs/LIPs via that address) without being it."""
    if s is None:
        return None
    if driver != "tap":
        raise t.error("host_address", f"only applies to driver = \"tap\" (this interface's driver is "
                                      f"{driver!r}: the kernel has no side of its link to address)")
    if "/" not in s:
        raise t.error("host_address", f"{s!r} needs a prefix length, e.g. '{s}/30'")
    try:
        host = ip_interface(s)
    except ValueError:
        raise t.error("host_address", f"invalid interface address {s!r}") from None
    if host.version != 4:
        raise t.error("host_address", f"{s!r} is IPv6; the host recipe is IPv4-only")
    net = host.network
    if net.prefixlen < 31 and host.ip in (net.network_address, net.broadcast_address):
        raise t.error("host_address", f"{s!r} is the network or broadcast address of {net}")
    if any(host.ip == a.ip for a in addrs):
        raise t.error("host_address", f"{host.ip} is pylvs's own address on this interface; the host "
                                      "side needs a different one in the same subnet")
    if not any(a.version == 4 and a.network == net for a in addrs):
        nets = ", ".join(str(a.network) for a in addrs if a.version == 4) or "none"
        raise t.error("host_address", f"{s!r} is not in the subnet of any of the interface's addresses "
                                      f"(IPv4 subnets: {nets})")
    return host


def _iface_ref(t: Reader, ifaces: dict[str, Interface]) -> Interface:
    name = t.str("interface")
    if name not in ifaces:
        raise t.error("interface", f"unknown interface {name!r} (defined: {', '.join(ifaces)})")
    return ifaces[name]


def _route(file: str, path: str, data: Any, ifaces: dict[str, Interface]) -> Route:
    t = Reader(file, data, path, _ROUTE_KEYS)
    s = t.str("prefix")
    if "/" not in s:
        raise t.error("prefix", f"{s!r} needs a prefix length, e.g. '{s}/32'")
    try:
        prefix = ip_network(s)  # strict: host bits set is a typo, not a wish
    except ValueError as e:
        raise t.error("prefix", f"invalid prefix {s!r}: {e}") from None
    via_s = t.str("via", None)
    via = None if via_s is None else read_ip(file, t.at("via"), via_s)
    iface = _iface_ref(t, ifaces)
    fam = _family(prefix.version)
    if via is not None and via.version != prefix.version:
        raise t.error("via", f"gateway {via} is {_family(via.version)} but the prefix {prefix} is {fam}")
    own = [a for a in iface.addresses if a.version == prefix.version]
    if not own:
        raise t.error("prefix", f"{fam} route but interface {iface.name!r} has no {fam} address")
    if via is not None:
        if any(via == a.ip for a in own):
            raise t.error("via", f"gateway {via} is an address of interface {iface.name!r} itself")
        if not any(via in a.network for a in own):
            nets = ", ".join(str(a.network) for a in own)
            raise t.error("via", f"gateway {via} is not inside a connected subnet of "
                                 f"interface {iface.name!r} ({nets})")
    return Route(prefix=prefix, via=via, interface=iface.name)


def _neighbor(file: str, path: str, data: Any, ifaces: dict[str, Interface]) -> Neighbor:
    t = Reader(file, data, path, _NEIGH_KEYS)
    addr = read_ip(file, t.at("address"), t.str("address"))
    mac = read_mac(file, t.at("mac"), t.str("mac"))
    iface = _iface_ref(t, ifaces)
    if not any(a.version == addr.version for a in iface.addresses):
        fam = _family(addr.version)
        raise t.error("address", f"{fam} neighbor but interface {iface.name!r} has no {fam} address")
    return Neighbor(address=addr, mac=mac, interface=iface.name)


def _health_check(file: str, path: str, data: Any) -> HealthCheck | None:
    """A ``health_check`` table; ``type = "none"`` turns checking off (e.g. one server of a checked pool)."""
    t = Reader(file, data, path, _CHECK_KEYS)
    kind = t.str("type", REQUIRED, CHECK_TYPES)
    wanted = _CHECK_TYPE_KEYS[kind]
    for key in t.data:
        if key in _CHECK_KEYS[:6] or key == "port" or key in wanted:
            continue
        raise t.error(key, f"{key!r} does not apply to a {kind!r} check")
    if kind == "none":
        return None
    interval = t.num("interval", 2.0, positive=True)
    timeout = t.num("timeout", min(1.0, interval), positive=True)
    if timeout > interval:
        # A check still running when the next is due would pile up: keepalived refuses this too.
        raise t.error("timeout", f"timeout {timeout:g} s is longer than the interval {interval:g} s")
    rise = t.int("rise", 2, 1, 1000)
    fall = t.int("fall", 3, 1, 1000)
    on_failure = t.str("on_failure", "quiesce", ON_FAILURE)
    port = t.int("port", None, 1, 65535)
    path_s = t.str("path", "/")
    if not path_s.startswith("/") or any(c.isspace() for c in path_s):
        raise t.error("path", f"expected an absolute path without whitespace like '/health', got {path_s!r}")
    st = t.array("status", [200, 399])
    if len(st) != 2 or not all(is_int(x) for x in st) or not 100 <= st[0] <= st[1] <= 599:
        raise t.error("status", f"expected [low, high] HTTP statuses with 100 <= low <= high <= 599, got {st!r}")
    body = t.str("body", None)
    host = t.str("host", None)
    send = t.str("send", "")
    if kind == "udp" and not send:
        raise t.error("send", "a 'udp' check needs a payload to send (send = \"...\")")
    expect = t.str("expect", "")
    cmd = t.array("command", [])
    if kind == "exec":
        if not cmd or not all(isinstance(x, str) and x for x in cmd):
            raise t.error("command", "expected a non-empty array of non-empty strings, e.g. "
                                     "[\"/usr/local/bin/check\", \"{address}\", \"{port}\"]")
    return HealthCheck(type=kind, interval=interval, timeout=timeout, rise=rise, fall=fall,
                       on_failure=on_failure, port=port, path=path_s, status=(st[0], st[1]), body=body,
                       host=host, send=send, expect=expect, command=tuple(cmd))


def _sorry_server(file: str, path: str, data: Any, vs_addr: IPAddress, vs_port: int,
                  vs_mode: str) -> SorryServer:
    t = Reader(file, data, path, _SORRY_KEYS)
    addr, port = _member(t, "sorry server", vs_addr, vs_port)
    mode = t.str("mode", None, MODES) or vs_mode
    if (mode == "fullnat") != (vs_mode == "fullnat"):
        raise t.error("mode", f"mode {mode!r} conflicts with the service's mode {vs_mode!r} "
                              "(FULLNAT applies to the whole service)")
    _no_port_mapping(t, "sorry server", port, vs_port, mode)
    return SorryServer(address=addr, port=port, mode=mode)


def _member(t: Reader, what: str, vs_addr: IPAddress, vs_port: int) -> tuple[IPAddress, int]:
    """A real or sorry server's address (the service's family) and port (default: the service's)."""
    addr = read_ip(t.file, t.at("address"), t.str("address"))
    if addr.version != vs_addr.version:
        raise t.error("address", f"{what} {addr} is {_family(addr.version)} but the service "
                                 f"{vs_addr} is {_family(vs_addr.version)}")
    return addr, t.int("port", vs_port, 1, 65535)


def _no_port_mapping(t: Reader, what: str, port: int, vs_port: int, mode: str) -> None:
    # DR leaves the IP packet alone and TUN encapsulates it whole: nothing rewrites the port.
    if mode in ("dr", "tun") and port != vs_port:
        raise t.error("port", f"DR/TUN cannot map ports: {what} port {port} differs from the "
                              f"service port {vs_port} (effective mode {mode!r})")


def _control(file: str, data: Any) -> Control:
    t = Reader(file, data, "control", _CONTROL_KEYS)
    sock = t.str("socket", DEFAULT_CTL_SOCKET)
    if sock and not os.path.isabs(sock):
        raise t.error("socket", f"expected an absolute path (or \"\" for none), got {sock!r}")
    metrics = t.str("metrics", DEFAULT_METRICS)
    if metrics:
        parse_listen(metrics, lambda msg: t.error("metrics", msg))
    return Control(socket=sock, metrics=metrics)


def parse_listen(s: str, error=ValueError) -> tuple[str, int]:
    """``"127.0.0.1:9470"`` or ``"[::1]:9470"`` -> (host, port); ``error(message)`` makes the exception."""
    host, sep, port_s = s.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:  # 0: any free port (tests)
        raise error(f"expected ADDRESS:PORT like '127.0.0.1:9470', got {s!r}")
    try:
        ip_address(host)
    except ValueError:
        raise error(f"{host!r} is not an IP address (expected ADDRESS:PORT like '127.0.0.1:9470')") from None
    return host, int(port_s)


def _real_server(file: str, path: str, data: Any, vs_addr: IPAddress, vs_port: int,
                 vs_mode: str, vs_check: HealthCheck | None) -> RealServer:
    t = Reader(file, data, path, _RS_KEYS)
    addr, port = _member(t, "real server", vs_addr, vs_port)
    weight = t.int("weight", 1, 0, 65535)
    own = t.str("mode", None, MODES)
    if own is None:
        mode = vs_mode
    elif vs_mode == "fullnat":
        # FULLNAT rewrites the source of every flow of the service; one RS cannot opt out.
        if own != "fullnat":
            raise t.error("mode", f"mode {own!r} conflicts with the service's mode 'fullnat' "
                                  "(FULLNAT applies to the whole service)")
        mode = own
    elif own == "fullnat":
        raise t.error("mode", "'fullnat' is a service-level mode (set mode = \"fullnat\" on the "
                              f"virtual_server); a real server may use: {', '.join(RS_MODES)}")
    else:
        mode = own
    _no_port_mapping(t, "real server", port, vs_port, mode)
    state = t.str("state", "ready", RS_STATES)
    check = vs_check
    if "health_check" in t.data:
        check = _health_check(file, t.at("health_check"), t.data["health_check"])
    return RealServer(address=addr, port=port, weight=weight, mode=mode, state=state, health_check=check)


def _virtual_server(file: str, path: str, data: Any, default_mode: str) -> VirtualServer:
    t = Reader(file, data, path, _VS_KEYS)
    addr = read_ip(file, t.at("address"), t.str("address"))
    if addr.version == 6:
        # The datapath is IPv4-only for now; everything else here stays family-generic.
        raise t.error("address", "IPv6 services are not supported yet")
    port = t.int("port", REQUIRED, 1, 65535)
    protocol = t.str("protocol", REQUIRED, PROTOCOLS)
    scheduler = t.str("scheduler", "wlc", SCHEDULERS)
    sh_port = t.bool("sh_port", False)
    sh_fallback = t.bool("sh_fallback", False)
    for key, on in (("sh_port", sh_port), ("sh_fallback", sh_fallback)):
        # ipvsadm has the same two flags for sh and mh (sh-port/mh-port, ...)
        if on and scheduler not in ("sh", "mh"):
            raise t.error(key, f"{key} only applies to the 'sh' and 'mh' schedulers (scheduler is {scheduler!r})")
    mode = t.str("mode", None, MODES) or default_mode
    persistence_timeout = t.num("persistence_timeout", 0.0)
    maxmask = 32 if addr.version == 4 else 128
    persistence_netmask = t.int("persistence_netmask", maxmask, 0, maxmask)

    lips: list[IPAddress] = []
    for i, v in enumerate(t.array("local_addresses", [])):
        p = f"{t.at('local_addresses')}[{i}]"
        lip = read_ip(file, p, v)
        if lip.version != addr.version:
            raise ConfigError(file, p, f"local address {lip} is {_family(lip.version)} but the "
                                       f"service {addr} is {_family(addr.version)}")
        if lip in lips:
            raise ConfigError(file, p, f"duplicate local address {lip}")
        lips.append(lip)
    # Only FULLNAT uses LIPs; elsewhere they are kept but ignored, so that a FULLNAT
    # file still loads with --mode nat.
    if mode == "fullnat" and not lips:
        raise t.error("local_addresses", "FULLNAT needs at least one local address (LIP) "
                                         "to use as the source towards the real servers")

    rng = t.array("local_port_range", [1024, 65535])
    if len(rng) != 2 or not all(is_int(x) for x in rng):
        raise t.error("local_port_range", f"expected [low, high] integers, got {rng!r}")
    lo, hi = rng
    if not (1 <= lo <= hi <= 65535):
        raise t.error("local_port_range", f"[{lo}, {hi}] must satisfy 1 <= low <= high <= 65535")

    toa = t.bool("toa", True)
    toa_kind = t.int("toa_kind", 254, 0, 255)
    toa_on_syn = t.bool("toa_on_syn", False)
    expire_nodest_conn = t.bool("expire_nodest_conn", False)

    check = None
    if "health_check" in t.data:
        check = _health_check(file, t.at("health_check"), t.data["health_check"])
    sorry = None
    if "sorry_server" in t.data:
        sorry = _sorry_server(file, t.at("sorry_server"), t.data["sorry_server"], addr, port, mode)
    rss: list[RealServer] = []
    seen: dict[tuple[IPAddress, int], int] = {}
    for j, (p, item) in enumerate(t.tables("real_server")):
        rs = _real_server(file, p, item, addr, port, mode, check)
        key = (rs.address, rs.port)
        if key in seen:
            raise ConfigError(file, p, f"duplicate real server {rs.address}:{rs.port} "
                                       f"(already {t.at('real_server')}[{seen[key]}])")
        seen[key] = j
        rss.append(rs)
    # An empty pool is allowed: the service exists and its packets are dropped (counted).
    return VirtualServer(
        address=addr, port=port, protocol=protocol, scheduler=scheduler, sh_port=sh_port,
        sh_fallback=sh_fallback, mode=mode, persistence_timeout=persistence_timeout,
        persistence_netmask=persistence_netmask, local_addresses=tuple(lips),
        local_port_range=(lo, hi), toa=toa, toa_kind=toa_kind, toa_on_syn=toa_on_syn,
        expire_nodest_conn=expire_nodest_conn, real_servers=tuple(rss), sorry_server=sorry,
        health_check=check)


def _timeouts(file: str, data: Any) -> dict[str, float]:
    t = Reader(file, data, "timeouts", tuple(DEFAULT_TIMEOUTS))
    out = dict(DEFAULT_TIMEOUTS)
    for key in t.data:
        out[key] = t.num(key, positive=True)
    return out


def _table(file: str, data: Any) -> Table:
    t = Reader(file, data, "table", _TABLE_KEYS)
    return Table(
        max_connections=t.int("max_connections", 1048576, 1),
        sloppy_tcp=t.bool("sloppy_tcp", False),
        icmp_echo=t.str("icmp_echo", "reply", ICMP_ECHO),
        neighbor_queue=t.int("neighbor_queue", 64, 0),
    )


# --------------------------------------------------------------------------- entry points

def parse_config(data: dict, file: str = "<config>", mode_override: str | None = None) -> Config:
    """Validate an already-parsed TOML document and build a :class:`Config`."""
    file = str(file)
    top = Reader(file, data, "", _TOP_KEYS)
    file_mode = top.str("mode", "nat", MODES)
    if mode_override is not None and mode_override not in MODES:
        raise ConfigError(file, "", f"mode override {mode_override!r} is not one of: {', '.join(MODES)}")
    mode = mode_override if mode_override is not None else file_mode

    ifaces: dict[str, Interface] = {}
    owner: dict[IPAddress, str] = {}
    items = top.tables("interface")
    if not items:
        raise top.error("interface", "at least one [[interface]] is required")
    for i, (p, item) in enumerate(items):
        iface = _interface(file, p, item)
        if iface.name in ifaces:
            k = list(ifaces).index(iface.name)
            raise ConfigError(file, f"{p}.name", f"duplicate interface name {iface.name!r} "
                                                 f"(already interface[{k}])")
        for k, a in enumerate(iface.addresses):
            if a.ip in owner:
                raise ConfigError(file, f"{p}.addresses[{k}]",
                                  f"{a.ip} is already an address of interface {owner[a.ip]!r}")
            owner[a.ip] = iface.name
        ifaces[iface.name] = iface

    routes: list[Route] = []
    for p, item in top.tables("route"):
        r = _route(file, p, item, ifaces)
        for k, prev in enumerate(routes):
            if prev.prefix == r.prefix:
                raise ConfigError(file, f"{p}.prefix", f"duplicate route {r.prefix} (already route[{k}])")
        routes.append(r)

    neighbors: list[Neighbor] = []
    for p, item in top.tables("neighbor"):
        n = _neighbor(file, p, item, ifaces)
        for k, prev in enumerate(neighbors):
            if (prev.address, prev.interface) == (n.address, n.interface):
                raise ConfigError(file, f"{p}.address", f"duplicate neighbor {n.address} on "
                                                        f"{n.interface!r} (already neighbor[{k}])")
        neighbors.append(n)

    services: list[VirtualServer] = []
    for p, item in top.tables("virtual_server"):
        vs = _virtual_server(file, p, item, mode)
        for k, prev in enumerate(services):
            if (prev.address, prev.port, prev.protocol) == (vs.address, vs.port, vs.protocol):
                raise ConfigError(file, p, f"duplicate service {vs.protocol} {vs.address}:{vs.port} "
                                           f"(already virtual_server[{k}])")
        services.append(vs)

    timeouts = _timeouts(file, data["timeouts"]) if "timeouts" in data else dict(DEFAULT_TIMEOUTS)
    table = _table(file, data["table"]) if "table" in data else Table()
    control = _control(file, data["control"]) if "control" in data else Control()
    return Config(file=file, mode=mode, interfaces=tuple(ifaces.values()), routes=tuple(routes),
                  neighbors=tuple(neighbors), virtual_servers=tuple(services),
                  timeouts=timeouts, table=table, control=control)


def load_config(path: str | os.PathLike, mode_override: str | None = None) -> Config:
    """Read and validate a TOML config file; every problem raises :class:`ConfigError`."""
    file = os.fspath(path)
    file = file.decode(errors="replace") if isinstance(file, bytes) else file
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as e:
        raise ConfigError(file, "", f"cannot read config file: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message carries "(at line L, column C)".
        raise ConfigError(file, "", f"TOML syntax error: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(file, "", f"file is not valid UTF-8: {e}") from None
    return parse_config(data, file, mode_override)
