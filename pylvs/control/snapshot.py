"""One plain-data picture of a running Director: what ``pylvs ctl list`` prints, what the metrics endpoint
exports, what ``--json`` hands to scripts.  Built in the event loop's thread between batches, so it is
consistent; nothing here runs per packet.

Schema (every value JSON-native; addresses as strings, counters as ints)::

    {
      "version": "0.1.0", "implementation": "native", "event_loop": "uvloop 0.23.0",
      "conn_table": {"entries": 12, "limit": 1048576, "fast_flows": 9},
      "timeouts": {"tcp": 900.0, "tcpfin": 120.0, "udp": 300.0},   # ipvsadm --timeout's three
      "drops": {"no_service": 3, ...},                              # by reason, only non-zero
      "totals": {"conns": .., "pkts_in": .., "pkts_out": .., "bytes_in": .., "bytes_out": ..},
      "services": [
        {"protocol": "tcp", "address": "198.18.0.100", "port": 80, "scheduler": "wrr",
         "flags": ["sh-port", ...],                 # ipvsadm's scheduler flags, [] for none
         "persistent": 0.0, "netmask": "255.255.255.255",
         "mode": "nat", "expire_nodest_conn": false,
         "conns": .., "pkts_in": .., "pkts_out": .., "bytes_in": .., "bytes_out": ..,
         "rate": {"cps": .., "inpps": .., "outpps": .., "inbps": .., "outbps": ..},
         "real_servers": [
           {"address": "198.19.0.11", "port": 8080, "mode": "nat", "forward": "Masq",
            "weight": 1,            # effective (what the scheduler uses; 0 = quiescent)
            "config_weight": 1,     # configured
            "state": "ready",       # ready | drain | maint (administrative)
            "health": "up",         # up | down | unchecked
            "sorry": false,         # true only for the service's sorry server while it is in use
            "active": .., "inactive": .., "persist": ..,
            "conns": .., "pkts_in": .., "pkts_out": .., "bytes_in": .., "bytes_out": ..,
            "rate": {...}}]}]
    }

Rates follow the IPVS estimator (net/netfilter/ipvs/ip_vs_est.c): every 2 s the counters are sampled and
each rate moves a quarter of the way to the last interval's value (an EWMA), per second.
"""

from __future__ import annotations

import ipaddress

from pylvs import __version__, native
from pylvs.core.packet import IPPROTO_TCP

#: ipvsadm's names for the forwarding methods (and DPVS's for FULLNAT)
FORWARD = {"nat": "Masq", "dr": "Route", "tun": "Tunnel", "fullnat": "FullNat"}
ESTIMATOR_INTERVAL = 2.0
_COUNTERS = ("conns", "pkts_in", "pkts_out", "bytes_in", "bytes_out")
_RATES = ("cps", "inpps", "outpps", "inbps", "outbps")


class RateEstimator:
    """IPVS-style rate estimates for any number of counter sets, keyed by object identity."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, tuple[int, ...], list[float]]] = {}

    def sample(self, objs, now: float) -> None:
        """Take a sample of every object's counters (call every ESTIMATOR_INTERVAL seconds)."""
        seen = set()
        for o in objs:
            k = id(o)
            seen.add(k)
            cur = tuple(getattr(o, c) for c in _COUNTERS)
            prev = self._last.get(k)
            if prev is None:
                self._last[k] = (now, cur, [0.0] * len(_RATES))
                continue
            t0, old, avg = prev
            dt = now - t0
            if dt <= 0:
                continue
            for i, (a, b) in enumerate(zip(cur, old)):
                rate = max(0, a - b) / dt * (8 if i >= 3 else 1)  # bytes → bits per second, as ipvsadm
                avg[i] += (rate - avg[i]) / 4
            self._last[k] = (now, cur, avg)
        for k in list(self._last):
            if k not in seen:
                del self._last[k]

    def rates(self, o) -> dict[str, int]:
        prev = self._last.get(id(o))
        avg = prev[2] if prev else [0.0] * len(_RATES)
        return {name: int(round(v)) for name, v in zip(_RATES, avg)}


def _addr(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _flags(cfg) -> list[str]:
    out = []
    if cfg.sh_fallback:
        out.append(f"{cfg.scheduler}-fallback")
    if cfg.sh_port:
        out.append(f"{cfg.scheduler}-port")
    return out


def counted_objects(director):
    """Everything the estimator samples: services and their servers (sorry servers included)."""
    for s in director.services:
        yield s
        yield from s.all_dests()


def dest_view(d, est: RateEstimator | None, *, sorry: bool = False) -> dict:
    return {
        "address": _addr(d.addr), "port": d.port, "mode": d.mode, "forward": FORWARD[d.mode],
        "weight": d.weight, "config_weight": d.cfg_weight, "state": d.admin, "health": d.health,
        "sorry": sorry, "active": d.active, "inactive": d.inactive, "persist": d.persist,
        **{c: getattr(d, c) for c in _COUNTERS},
        "rate": est.rates(d) if est else dict.fromkeys(_RATES, 0),
    }


def service_view(s, est: RateEstimator | None) -> dict:
    cfg = s.cfg
    # A server in maintenance stays listed (weight 0) so it can be brought back; one a failed check
    # removed is not, as keepalived's removal shows in ipvsadm.
    rs = [dest_view(d, est) for d in s.dests if d.available or d.admin == "maint"]
    if s.sorry is not None and (s.sorry_in_use() or s.sorry.active or s.sorry.inactive):
        rs.append(dest_view(s.sorry, est, sorry=True))
    netmask = str(ipaddress.ip_network(f"0.0.0.0/{cfg.persistence_netmask}").netmask)
    return {
        "protocol": cfg.protocol, "address": str(cfg.address), "port": cfg.port, "scheduler": cfg.scheduler,
        "flags": _flags(cfg), "persistent": float(cfg.persistence_timeout), "netmask": netmask,
        "mode": cfg.mode, "expire_nodest_conn": bool(cfg.expire_nodest_conn),
        **{c: getattr(s, c) for c in _COUNTERS},
        "rate": est.rates(s) if est else dict.fromkeys(_RATES, 0),
        "real_servers": rs,
    }


def snapshot(director, est: RateEstimator | None = None, *, event_loop: str = "") -> dict:
    director.fast.fold_counters()
    services = [service_view(s, est) for s in director.services]
    t = director.timeouts
    return {
        "version": __version__, "implementation": native.IMPLEMENTATION, "event_loop": event_loop,
        "conn_table": {"entries": len(director.table), "limit": director.table.max_size,
                       "fast_flows": len(director.fast.table)},
        "timeouts": {"tcp": float(t["established"]), "tcpfin": float(t["fin_wait"]), "udp": float(t["udp"])},
        "drops": {k: v for k, v in sorted(director.drops.items()) if v},
        "totals": {c: sum(s[c] for s in services) for c in _COUNTERS},
        "services": services,
    }


def conn_views(director, now: float, limit: int | None = None):
    """``ipvsadm -Lnc`` rows: one dict per connection (fast-path deadlines pulled in first)."""
    n = 0
    for c in director.table:
        if limit is not None and n >= limit:
            return
        yield conn_view(director, c, now)
        n += 1


def conn_view(director, c, now: float) -> dict:
    """One ``ipvsadm -Lnc`` row."""
    from pylvs.core.tcpstate import STATES

    director.fast.refresh(c)
    tcp = c.proto == IPPROTO_TCP
    return {
        "protocol": "tcp" if tcp else "udp",
        "expires": max(0.0, c.expires - now),
        "state": STATES[c.state] if tcp else "UDP",
        "client": f"{_addr(c.caddr)}:{c.cport}", "virtual": f"{_addr(c.vaddr)}:{c.vport}",
        "local": f"{_addr(c.laddr)}:{c.lport}", "destination": f"{_addr(c.daddr)}:{c.dport}",
        "mode": c.mode,
    }
