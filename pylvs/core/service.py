"""A virtual service at run time: its real servers, scheduler, persistence
templates and (FULLNAT) local address/port pool.

Persistence follows ipvsadm ``-p``/``-M``: a template keyed by the client
address masked with ``persistence_netmask`` pins the client to one server; it
lives ``persistence_timeout`` seconds after the last connection it created, and
not less than any connection it still controls (IPVS re-arms a template whose
``n_control`` is non-zero).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

from pylvs.core.dest import Dest
from pylvs.core.modes import RULES
from pylvs.core.packet import IPPROTO_TCP, IPPROTO_UDP
from pylvs.core.schedulers import make_scheduler
from pylvs.core.toa import toa_option

PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


@dataclass(eq=False)
class Template:
    dest: Dest
    expires: float
    n_control: int = 0


class Service:
    def __init__(self, vs) -> None:
        self.cfg = vs
        self.proto = PROTOCOLS[vs.protocol]
        self.addr = vs.address.packed
        self.port = vs.port
        self.label = f"{vs.protocol.upper()} {vs.address}:{vs.port}"
        self.mode = vs.mode
        self.dests: list[Dest] = [
            Dest(addr=rs.address.packed, port=rs.port, weight=rs.weight, mode=rs.mode,
                 label=f"{rs.address}:{rs.port}")
            for rs in vs.real_servers
        ]
        # Routed modes answer TTL ≤ 1 before a server is picked, so an expiring
        # packet does not move the scheduler on (mixed-mode pools check later).
        self.all_routed = bool(self.dests) and all(RULES[d.mode].routed for d in self.dests)
        self.scheduler = make_scheduler(vs.scheduler, self.dests, sh_port=vs.sh_port, sh_fallback=vs.sh_fallback)
        self.persistence = float(vs.persistence_timeout)
        self._mask = int(ipaddress.ip_network(f"0.0.0.0/{vs.persistence_netmask}").netmask) if self.persistence else 0
        self.templates: dict[bytes, Template] = {}
        self.lips = [a.packed for a in vs.local_addresses]
        self.port_lo, self.port_hi = vs.local_port_range
        self._cursor = 0  # next (LIP, port) slot to try, as one running index
        self.toa = bool(vs.toa)
        self.toa_kind = vs.toa_kind
        self.toa_on_syn = bool(vs.toa_on_syn)
        self.expire_nodest_conn = bool(vs.expire_nodest_conn)
        self.conns = self.pkts_in = self.pkts_out = self.bytes_in = self.bytes_out = 0

    def toa_option(self, caddr: bytes, cport: int) -> bytes:
        return toa_option(self.toa_kind, caddr, cport)

    # -------------------------------------------------------------- scheduling

    def choose(self, caddr: bytes, cport: int, now: float) -> tuple[Dest | None, Template | None]:
        """Pick the server for a new flow, honouring a live persistence template."""
        if not self.persistence:
            return self.scheduler.pick(caddr, cport), None
        key = (int.from_bytes(caddr, "big") & self._mask).to_bytes(len(caddr), "big")
        t = self.templates.get(key)
        if t is not None and (t.expires > now or t.n_control > 0) and t.dest.available:
            t.expires = now + self.persistence
            return t.dest, t
        if t is not None:
            self._drop_template(key, t)
        dest = self.scheduler.pick(caddr, cport)
        if dest is None:
            return None, None
        t = Template(dest, now + self.persistence)
        dest.persist += 1
        self.templates[key] = t
        return dest, t

    def _drop_template(self, key: bytes, t: Template) -> None:
        del self.templates[key]
        t.dest.persist -= 1

    def expire_templates(self, now: float) -> None:
        for key, t in list(self.templates.items()):
            if t.expires <= now and t.n_control <= 0:
                self._drop_template(key, t)

    def allocate_local(self, proto: int, dest: Dest, taken: Callable[[tuple], bool]) -> tuple[bytes, int] | None:
        """FULLNAT: a (LIP, lport) whose outbound tuple to ``dest`` is free.

        A running cursor walks the whole pool before reusing a slot, so a port
        just released is not handed out again at once (the RS may still hold it
        in TIME_WAIT).  Every slot is tried at most once: exhaustion is reported
        as None, never a collision.
        """
        if not self.lips:
            return None
        span = self.port_hi - self.port_lo + 1
        size = span * len(self.lips)
        cur = self._cursor
        for i in range(size):
            slot = (cur + i) % size
            lip = self.lips[slot // span]
            lport = self.port_lo + slot % span
            if not taken((proto, dest.addr, dest.port, lip, lport)):
                self._cursor = (slot + 1) % size
                return lip, lport
        return None

    def stats(self) -> dict:
        return {
            "service": self.label,
            "scheduler": self.cfg.scheduler,
            "conns": self.conns, "pkts_in": self.pkts_in, "pkts_out": self.pkts_out,
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "real_servers": [
                {"server": d.label, "mode": d.mode, "weight": d.weight, "active": d.active,
                 "inactive": d.inactive, "conns": d.conns, "pkts_in": d.pkts_in, "pkts_out": d.pkts_out,
                 "bytes_in": d.bytes_in, "bytes_out": d.bytes_out}
                for d in self.dests
            ],
        }


def build_services(config) -> list[Service]:
    return [Service(vs) for vs in config.virtual_servers]
