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


def _new_dest(rs) -> Dest:
    return Dest(addr=rs.address.packed, port=rs.port, weight=rs.weight, mode=rs.mode,
                label=f"{rs.address}:{rs.port}")


class Service:
    def __init__(self, vs) -> None:
        self.proto = PROTOCOLS[vs.protocol]
        self.addr = vs.address.packed
        self.port = vs.port
        self.label = f"{vs.protocol.upper()} {vs.address}:{vs.port}"
        self.dests: list[Dest] = []
        #: servers removed from the configuration, kept for their flows and reused if added back (IPVS's
        #: dest trash, ip_vs_trash_get_dest)
        self.retired: dict[tuple, Dest] = {}
        self.sorry: Dest | None = None
        self.templates: dict[bytes, Template] = {}
        self.lips: list[bytes] = []
        self._cursor = 0  # next (LIP, port) slot to try, as one running index
        self._port_range: tuple[int, int] | None = None
        self.persistence: float | None = None
        self._mask: int | None = None
        self.conns = self.pkts_in = self.pkts_out = self.bytes_in = self.bytes_out = 0
        #: live flows of this service (a retired service is forgotten when this reaches 0)
        self.live = 0
        self.reconfigure(vs)

    @staticmethod
    def key_of(vs) -> tuple[int, bytes, int]:
        return PROTOCOLS[vs.protocol], vs.address.packed, vs.port

    def reconfigure(self, vs) -> list[Dest]:
        """Take a (new) configuration of this same service; returns the servers new to it.

        Servers are matched by address and port: a kept one keeps its counters, connections and health;
        one no longer listed is retired (``present`` False), its flows left to the caller's policy.
        Existing flows keep the mode and server they were created with; the rest applies to new flows.
        """
        self.cfg = vs
        self.mode = vs.mode
        old = {(d.addr, d.port): d for d in self.dests}
        added: list[Dest] = []
        dests: list[Dest] = []
        for rs in vs.real_servers:
            key = (rs.address.packed, rs.port)
            d = old.pop(key, None) or self.retired.pop(key, None)
            if d is None:
                d = _new_dest(rs)
                added.append(d)
            d.cfg_weight, d.mode, d.admin, d.present = rs.weight, rs.mode, rs.state, True
            d.on_failure = rs.health_check.on_failure if rs.health_check else "quiesce"
            if rs.health_check is None:
                d.healthy = None
            d.settle()
            dests.append(d)
        for key, d in old.items():
            d.present = False
            d.settle()
            self.retired[key] = d
        self.dests = dests
        sorry = vs.sorry_server
        if self.sorry is not None and (sorry is None or (self.sorry.addr, self.sorry.port, self.sorry.mode) != (
                sorry.address.packed, sorry.port, sorry.mode)):
            # The old sorry server's flows go on (or not) like any retired server's.
            self.sorry.present = False
            self.sorry.settle()
            self.retired[(self.sorry.addr, self.sorry.port, "sorry")] = self.sorry
            self.sorry = None
        if sorry is not None and self.sorry is None:
            self.sorry = Dest(addr=sorry.address.packed, port=sorry.port, weight=1, mode=sorry.mode,
                              label=f"{sorry.address}:{sorry.port} (sorry)")
            added.append(self.sorry)
        # Routed modes answer TTL ≤ 1 before a server is picked, so an expiring
        # packet does not move the scheduler on (mixed-mode pools check later).
        self.all_routed = bool(self.dests) and all(RULES[d.mode].routed for d in self.dests)
        self.scheduler = make_scheduler(vs.scheduler, self.dests, sh_port=vs.sh_port, sh_fallback=vs.sh_fallback)
        persistence = float(vs.persistence_timeout)
        mask = int(ipaddress.ip_network(f"0.0.0.0/{vs.persistence_netmask}").netmask) if persistence else 0
        if (persistence, mask) != (self.persistence, self._mask):
            for key, t in list(self.templates.items()):  # other keys or none at all: start over
                self._drop_template(key, t)
        self.persistence, self._mask = persistence, mask
        lips = [a.packed for a in vs.local_addresses]
        if (lips, tuple(vs.local_port_range)) != (self.lips, self._port_range):
            self._cursor = 0  # a new pool: the running index means nothing in it
        self.lips = lips
        self.port_lo, self.port_hi = self._port_range = tuple(vs.local_port_range)
        self.toa = bool(vs.toa)
        self.toa_kind = vs.toa_kind
        self.toa_on_syn = bool(vs.toa_on_syn)
        self.expire_nodest_conn = bool(vs.expire_nodest_conn)
        return added

    def reschedule(self) -> None:
        """After weights or availability changed: the scheduler rebuilds its tables (IPVS upd_dest)."""
        self.scheduler.update(self.dests)

    def all_dests(self) -> list[Dest]:
        """Every server flows of this service may point at: configured, retired, the sorry server."""
        out = self.dests + list(self.retired.values())
        if self.sorry is not None:
            out.append(self.sorry)
        return out

    def sorry_in_use(self) -> bool:
        return self.sorry is not None and not any(d.usable for d in self.dests)

    def toa_option(self, caddr: bytes, cport: int) -> bytes:
        return toa_option(self.toa_kind, caddr, cport)

    # -------------------------------------------------------------- scheduling

    def choose(self, caddr: bytes, cport: int, now: float) -> tuple[Dest | None, Template | None]:
        """Pick the server for a new flow, honouring a live persistence template."""
        if not self.persistence:
            dest = self.scheduler.pick(caddr, cport)
            if dest is None and self.sorry is not None:
                return self._sorry_pick(), None
            return dest, None
        key = (int.from_bytes(caddr, "big") & self._mask).to_bytes(len(caddr), "big")
        t = self.templates.get(key)
        if t is not None and (t.expires > now or t.n_control > 0) and t.dest.available:
            t.expires = now + self.persistence
            return t.dest, t
        if t is not None:
            self._drop_template(key, t)
        dest = self.scheduler.pick(caddr, cport)
        if dest is None:
            # The sorry server is a stand-in: no client is pinned to it.
            return (self._sorry_pick() if self.sorry is not None else None), None
        t = Template(dest, now + self.persistence)
        dest.persist += 1
        self.templates[key] = t
        return dest, t

    def _sorry_pick(self) -> Dest | None:
        """keepalived's sorry_server: used only while no real server can take a new flow."""
        return self.sorry if self.sorry_in_use() else None

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
