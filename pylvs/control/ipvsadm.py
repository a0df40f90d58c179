"""Render a snapshot (see :mod:`pylvs.control.snapshot`) the way ``ipvsadm`` prints IPVS's state.

Operators parse ``ipvsadm -Ln`` with scripts, so the plain text copies ipvsadm.c (1.31) printf for printf:
the titles of ``print_title``, the lines of ``print_service_entry``, the number field of ``print_largenum``,
the ``-Lnc`` rows of ``list_conn``/``print_conn`` and the ``--timeout`` line of ``list_timeout``.  Like
ipvsadm (without ``--nosort``), services and servers are listed sorted (libipvs ``ipvs_cmp_services`` /
``ipvs_cmp_dests``).  Padding is kept exactly, trailing blanks included (``%-10u\\n`` pads InActConn).

:func:`render_rich` is the terminal view: one rich table per service, with what ipvsadm has no column for
(configured weight, administrative state, health, the sorry server).
"""

from __future__ import annotations

import ipaddress

#: ip_vs.h's IP_VS_VERSION_CODE 0x010201, what ``IP Virtual Server version %d.%d.%d`` shows
IPVS_VERSION = "1.2.1"
#: fwd_name(); FullNat is DPVS's name (its ipvsadm fork prints it the same way)
FORWARD = {"nat": "Masq", "dr": "Route", "tun": "Tunnel", "fullnat": "FullNat"}
_COUNTERS = ("conns", "pkts_in", "pkts_out", "bytes_in", "bytes_out")
_RATES = ("cps", "inpps", "outpps", "inbps", "outbps")


# --- print_largenum -----------------------------------------------------------------------------------------

def largenum(n: int, exact: bool = False) -> str:
    """ipvsadm's ``print_largenum``: a right-aligned field, 9 wide (8 digits + unit when scaled).

    Exact (``-x``): ``%*llu`` with width 9, or len+1 when the number has more than 8 digits.  Otherwise:
    below 100 million as is; below 1 billion in K; below 100 billion in M; below 100 trillion in G; else T
    (integer division, so truncated, by 1000, 10**6, 10**9, 10**12)."""
    n = int(n)
    if exact:
        s = str(n)
        return s.rjust(9 if len(s) <= 8 else len(s) + 1)
    if n < 100_000_000:
        return f"{n:9d}"
    if n < 1_000_000_000:
        return f"{n // 1_000:8d}K"
    if n < 100_000_000_000:
        return f"{n // 1_000_000:8d}M"
    if n < 100_000_000_000_000:
        return f"{n // 1_000_000_000:8d}G"
    return f"{n // 1_000_000_000_000:8d}T"


# --- addrport_to_anyname (numeric) and the sort orders ---------------------------------------------------

def _addrport(addr: str, port: int) -> str:
    """addrport_to_anyname() with -n: ``a.b.c.d:port``, ``[v6]:port``."""
    ip = ipaddress.ip_address(addr)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _is_v6(addr: str) -> bool:
    return ipaddress.ip_address(addr).version == 6


_PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132}


def _svc_key(s: dict):
    # ipvs_cmp_services: fwmark, af, protocol, address, port (numerically; the C's int-overflow quirks aside)
    ip = ipaddress.ip_address(s["address"])
    return (ip.version, _PROTO_NUM.get(s["protocol"], 255), int(ip), s["port"])


def _dest_key(d: dict):
    # ipvs_cmp_dests: address, then port
    ip = ipaddress.ip_address(d["address"])
    return (ip.version, int(ip), d["port"])


def _services(snap: dict) -> list[dict]:
    return sorted(snap.get("services", ()), key=_svc_key)


def _dests(svc: dict) -> list[dict]:
    return sorted(svc.get("real_servers", ()), key=_dest_key)


# --- print_title ------------------------------------------------------------------------------------------

def _title(stats: bool, rate: bool) -> str:
    if stats:
        return (f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} "
                f"{'OutBytes':>8}\n  -> RemoteAddress:Port\n")
    if rate:
        return (f"{'Prot LocalAddress:Port':<33} {'CPS':>8} {'InPPS':>8} {'OutPPS':>8} {'InBPS':>8} "
                f"{'OutBPS':>8}\n  -> RemoteAddress:Port\n")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


# --- print_service_entry ----------------------------------------------------------------------------------

def _svc_name(s: dict) -> str:
    # sprintf("%-4s %s", protocol_name(), vname), cut to 33 characters for IPv4
    name = f"{s['protocol'].upper():<4} {_addrport(s['address'], s['port'])}"
    return name if _is_v6(s["address"]) else name[:33]


def _dname(d: dict) -> str:
    # dname[28] = '\0' for IPv4
    name = _addrport(d["address"], d["port"])
    return name if _is_v6(d["address"]) else name[:28]


def _svc_options(s: dict) -> str:
    """The plain listing's tail after the scheduler: `` (flags)``, `` persistent T``, `` mask M``."""
    out = ""
    if s.get("flags"):
        out += f" ({','.join(s['flags'])})"  # print_sched_flags: comma-joined, in parentheses
    timeout = int(s.get("persistent") or 0)
    if timeout:  # IP_VS_SVC_F_PERSISTENT
        out += f" persistent {timeout}"
        mask = s.get("netmask", "255.255.255.255")
        if _is_v6(s["address"]):
            plen = int(mask) if str(mask).isdigit() else 128  # IPv6 netmasks are prefix lengths
            if plen != 128:
                out += f" mask {plen}"  # " mask %i"
        elif mask != "255.255.255.255":
            out += f" mask {mask}"  # " mask %s", inet_ntoa(netmask)
    return out


def _service_lines(s: dict, stats: bool, rate: bool, exact: bool) -> list[str]:
    name = _svc_name(s)
    if stats:
        lines = [f"{name:<33}" + "".join(largenum(s[c], exact) for c in _COUNTERS)]
    elif rate:
        r = s.get("rate", {})
        lines = [f"{name:<33}" + "".join(largenum(r.get(c, 0), exact) for c in _RATES)]
    else:
        lines = [f"{name} {s['scheduler']}{_svc_options(s)}"]
    for d in _dests(s):
        dn = _dname(d)
        if stats:
            lines.append(f"  -> {dn:<28}" + "".join(largenum(d[c], exact) for c in _COUNTERS))
        elif rate:
            # "  -> %-28s %8llu %8llu %8llu" then print_largenum() for the two bit rates
            r = d.get("rate", {})
            lines.append(f"  -> {dn:<28} {r.get('cps', 0):8d} {r.get('inpps', 0):8d} {r.get('outpps', 0):8d}"
                         + largenum(r.get("inbps", 0), exact) + largenum(r.get("outbps", 0), exact))
        else:
            # "  -> %-28s %-7s %-6d %-10u %-10u\n"
            fwd = d.get("forward") or FORWARD.get(d.get("mode", ""), "")
            lines.append(f"  -> {dn:<28} {fwd:<7} {d['weight']:<6d} {d['active']:<10d} {d['inactive']:<10d}")
    return lines


# --- list_all: ipvsadm -Ln [--stats|--rate] [--exact] -------------------------------------------------------

def render_list(snap: dict, *, stats=False, rate=False, exact=False) -> str:
    """``ipvsadm -Ln`` (``--stats``, ``--rate``, ``--exact``); if both stats and rate are asked, stats wins."""
    stats, rate = bool(stats), bool(rate) and not stats
    size = snap.get("conn_table", {}).get("limit", 0)
    out = [f"IP Virtual Server version {IPVS_VERSION} (size={size})\n", _title(stats, rate)]
    for s in _services(snap):
        out.extend(line + "\n" for line in _service_lines(s, stats, rate, exact))
    return "".join(out)


# --- list_conn / print_conn: ipvsadm -Lnc ------------------------------------------------------------------

def _expire(seconds: float) -> str:
    # sprintf("%02d:%02d", expires / 60, expires % 60) on whole seconds
    t = max(0, int(seconds))
    return f"{t // 60:02d}:{t % 60:02d}"


def render_conns(rows: list[dict]) -> str:
    """``ipvsadm -Lnc``: header, then ``"%-3s %-6s %-11s %-18s %-18s %s\\n"`` per connection.  The source
    is the client; FULLNAT's local address has no column (as in ipvsadm)."""
    out = ["IPVS connection entries\n",
           f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination\n"]
    for r in rows:
        out.append(f"{r['protocol'].upper():<3} {_expire(r['expires']):<6} {r['state']:<11} "
                   f"{r['client']:<18} {r['virtual']:<18} {r['destination']}\n")
    return "".join(out)


# --- list_timeout: ipvsadm -L --timeout --------------------------------------------------------------------

def render_timeouts(snap: dict) -> str:
    t = snap.get("timeouts", {})
    return "Timeout (tcp tcpfin udp): %d %d %d\n" % (int(t.get("tcp", 0)), int(t.get("tcpfin", 0)),
                                                     int(t.get("udp", 0)))


# --- the terminal view -------------------------------------------------------------------------------------

_STATE_STYLE = {"ready": "green", "drain": "yellow", "maint": "red"}
_HEALTH_STYLE = {"up": "green", "down": "bold red", "unchecked": "dim"}


def render_rich(snap: dict, *, stats=False, rate=False, exact=False, console=None) -> None:
    """A header, then one rich Table per service.  ``rate`` (unless ``stats``) shows the estimator's rates
    in place of the counters; ``exact`` prints numbers in full instead of ipvsadm's K/M/G/T."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    rate = bool(rate) and not stats
    num = (lambda n: str(int(n))) if exact else (lambda n: largenum(n).strip())
    ct = snap.get("conn_table", {})
    head = Text.assemble(
        ("pylvs ", "bold"), (str(snap.get("version", "?")), "bold"),
        f"  IP Virtual Server version {IPVS_VERSION} (size={ct.get('limit', 0)})",
        f"  implementation: {snap.get('implementation', '?')}",
        *([f"  event loop: {snap['event_loop']}"] if snap.get("event_loop") else []),
        f"  conn table: {ct.get('entries', 0)}/{ct.get('limit', 0)} entries",
        *([f" ({ct['fast_flows']} fast)"] if "fast_flows" in ct else []))
    console.print(head)
    if snap.get("drops"):
        console.print(Text("drops: " + ", ".join(f"{k}={v}" for k, v in snap["drops"].items()), "yellow"))
    if not snap.get("services"):
        console.print("no services", style="dim")

    for s in _services(snap):
        title = Text(f"{_svc_name(s)} {s['scheduler']}{_svc_options(s)}")  # Text: "[v6]" is no markup
        if rate:
            r = s.get("rate", {})
            caption = (f"cps {num(r.get('cps', 0))}  pps {num(r.get('inpps', 0))}/{num(r.get('outpps', 0))}"
                       f"  bps {num(r.get('inbps', 0))}/{num(r.get('outbps', 0))}")
        else:
            caption = (f"conns {num(s['conns'])}  pkts {num(s['pkts_in'])}/{num(s['pkts_out'])}"
                       f"  bytes {num(s['bytes_in'])}/{num(s['bytes_out'])}")
        t = Table(title=title, title_justify="left", caption=Text(caption), caption_justify="left")
        t.add_column("server")
        t.add_column("forward")
        t.add_column("weight", justify="right")
        t.add_column("state")
        t.add_column("health")
        t.add_column("active", justify="right")
        t.add_column("inactive", justify="right")
        cols = (("cps", "pps in", "pps out", "bps in", "bps out") if rate
                else ("conns", "pkts in", "pkts out", "bytes in", "bytes out"))
        for c in cols:
            t.add_column(c, justify="right")
        for d in _dests(s):
            server = Text(_addrport(d["address"], d["port"]))
            if d.get("sorry"):
                server.append(" (sorry)", style="bold magenta")
            w, cw = d.get("weight", 0), d.get("config_weight", d.get("weight", 0))
            weight = str(w) if w == cw else f"{w} (of {cw})"
            state, health = d.get("state", ""), d.get("health", "")
            values = ([d.get("rate", {}).get(c, 0) for c in _RATES] if rate else [d[c] for c in _COUNTERS])
            t.add_row(server, d.get("forward") or FORWARD.get(d.get("mode", ""), ""), weight,
                      Text(state, style=_STATE_STYLE.get(state, "")),
                      Text(health, style=_HEALTH_STYLE.get(health, "")),
                      str(d.get("active", 0)), str(d.get("inactive", 0)), *(num(v) for v in values),
                      style="magenta" if d.get("sorry") else None)
        console.print(t)
