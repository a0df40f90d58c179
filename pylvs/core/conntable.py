"""The connection table: one entry per flow, found from both directions.

Like DPVS, each entry is reachable through two keys: the inbound tuple
``(proto, caddr, cport, vaddr, vport)`` and, for modes where the director sees
replies (NAT, FULLNAT), the outbound tuple ``(proto, daddr, dport, laddr, lport)``
(``laddr``/``lport`` are the client's own for NAT, the LIP/lport for FULLNAT).
Addresses are packed ``bytes`` (4 or 16 long), so the table is family-agnostic.

The keys are tuples containing ``bytes``, whose hash is CPython's SipHash with a
per-process random key (PEP 456), so a crafted set of tuples cannot be made to
collide on purpose — the reason IPVS moved its connection hash to siphash.

Expiry is driven by the ``now`` the caller passes: a lazy min-heap of
``(expires, seq, conn)`` holds at most one entry per connection; when an entry
pops early because the connection was refreshed, it is pushed back with its new
deadline (so a refresh costs nothing on the per-packet path).
"""

from __future__ import annotations

import heapq
import itertools
import struct
from typing import Callable, Iterator

from pylvs.core.dest import Dest
from pylvs.core.tcpstate import STATES

IN = 0
OUT = 1

_PORTS = struct.Struct("!HH")


class Conn:
    """One connection (IPVS ``struct ip_vs_conn``)."""

    __slots__ = (
        "proto", "caddr", "cport", "vaddr", "vport", "laddr", "lport", "daddr", "dport",
        "dest", "svc", "mode", "state", "expires", "timeout", "inactive", "no_output",
        "in_ifname", "client_mac", "toa_done", "template",
        "pkts_in", "pkts_out", "bytes_in", "bytes_out", "in_key", "out_key", "alive", "fslot",
        "rw_in", "rw_out",
    )

    def __init__(self, proto: int, caddr: bytes, cport: int, vaddr: bytes, vport: int,
                 laddr: bytes, lport: int, daddr: bytes, dport: int, dest: Dest | None,
                 svc, mode: str) -> None:
        self.proto = proto
        self.caddr, self.cport = caddr, cport
        self.vaddr, self.vport = vaddr, vport
        self.laddr, self.lport = laddr, lport
        self.daddr, self.dport = daddr, dport
        self.dest = dest
        self.svc = svc
        self.mode = mode
        self.state = 0
        self.expires = 0.0
        self.timeout = 0.0
        #: IPVS IP_VS_CONN_F_INACTIVE: counted in dest.inactive rather than active
        self.inactive = False
        #: IPVS IP_VS_CONN_F_NOOUTPUT: DR/TUN, use the input-only state table
        self.no_output = mode in ("dr", "tun")
        self.in_ifname = ""
        self.client_mac = b""
        self.toa_done = False
        self.template = None
        self.pkts_in = self.pkts_out = self.bytes_in = self.bytes_out = 0
        self.in_key = (proto, caddr, cport, vaddr, vport)
        self.out_key = None if self.no_output else (proto, daddr, dport, laddr, lport)
        self.alive = False  # set by ConnTable.insert: "in the table"
        #: slot in the fast path's flow table (native.FlowTable), -1 when the flow has none
        self.fslot = -1
        #: NAT/FULLNAT header images (see :meth:`image`), made when the slow path first needs them
        self.rw_in = self.rw_out = None

    def image(self, direction: int) -> tuple[bytes, bytes, bytes]:
        """The header image :func:`pylvs.core.rewrite.rewrite_tuple` writes for a packet of this flow going
        ``direction``: (source + destination address, source + destination port, the two together).
        Inbound the packet becomes laddr:lport -> daddr:dport (NAT: laddr:lport is the client itself),
        outbound vaddr:vport -> caddr:cport.  Made once, on the slow path's first rewrite, rather than per
        packet; dropped when the flow enters the fast path (FastPath.sync: about 400 bytes a flow the
        fast path holds), made again if the slow path needs it after that."""
        if self.rw_in is None:
            a, ports = self.laddr + self.daddr, _PORTS.pack(self.lport, self.dport)
            self.rw_in = (a, ports, a + ports)
            a, ports = self.vaddr + self.caddr, _PORTS.pack(self.vport, self.cport)
            self.rw_out = (a, ports, a + ports)
        return self.rw_in if direction == IN else self.rw_out

    @property
    def state_name(self) -> str:
        return STATES[self.state]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<Conn {self.proto} {self.in_key} -> {self.daddr.hex()}:{self.dport} {self.state_name}>"


class ConnTable:
    """Flows by both keys, with a hard capacity and time-driven expiry."""

    def __init__(self, max_size: int, on_expire: Callable[[Conn], None] | None = None) -> None:
        self.max_size = max_size
        self._map: dict[tuple, tuple[Conn, int]] = {}
        #: the lazy min-heap of ``(expires, seq, conn)``: ``heap[0][0]`` is the earliest deadline that may be
        #: due (the Director peeks at it per packet and calls :meth:`expire` only when one is)
        self.heap: list[tuple[float, int, Conn]] = []
        self._seq = itertools.count()
        self._count = 0
        self._on_expire = on_expire
        #: Called with a flow whose deadline looks past, before it is expired: the fast path may have
        #: refreshed it since (it moves its own copy of the deadline), and this pulls that in.
        self.refresh: Callable[[Conn], None] | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Conn]:
        for conn, direction in self._map.values():
            if direction == IN:
                yield conn

    def chunks(self, size: int) -> Iterator[list[Conn]]:
        """The flows in lists of up to ``size``, from a copy of the table taken first (one C-speed copy, about
        0.1 s at 1 M flows): the caller may let the datapath run between chunks, which changes the table
        (flows expired meanwhile still appear; check ``conn.alive``)."""
        flows = (c for c, d in list(self._map.values()) if d == IN)
        while chunk := list(itertools.islice(flows, size)):
            yield chunk

    @property
    def full(self) -> bool:
        """At capacity, counting flows not yet swept."""
        return self._count >= self.max_size

    def is_full(self, now: float) -> bool:
        """At capacity, after sweeping flows whose deadline already passed."""
        if self._count >= self.max_size:
            self.expire(now, budget=256)
        return self._count >= self.max_size

    def lookup(self, key: tuple, now: float) -> tuple[Conn, int] | None:
        """Find a flow by either key; an expired one is removed and not returned."""
        hit = self._map.get(key)
        if hit is None:
            return None
        conn = hit[0]
        if conn.expires <= now and self.refresh is not None:
            self.refresh(conn)
        if conn.expires <= now:
            self._expire(conn)
            return None
        return hit

    def taken(self, key: tuple, now: float) -> bool:
        return self.lookup(key, now) is not None

    def insert(self, conn: Conn, now: float) -> bool:
        """Add a flow; False when the table is full or a key is already in use."""
        if self.is_full(now):
            return False
        if self.lookup(conn.in_key, now) is not None:
            return False
        if conn.out_key is not None and self.lookup(conn.out_key, now) is not None:
            return False
        conn.alive = True
        self._map[conn.in_key] = (conn, IN)
        if conn.out_key is not None:
            self._map[conn.out_key] = (conn, OUT)
        self._count += 1
        heapq.heappush(self.heap, (conn.expires, next(self._seq), conn))
        return True

    def set_expiry(self, conn: Conn, expires: float) -> None:
        """Move a flow's deadline; only an earlier one needs a new heap entry."""
        if expires < conn.expires and conn.alive:
            heapq.heappush(self.heap, (expires, next(self._seq), conn))
        conn.expires = expires

    def remove(self, conn: Conn) -> None:
        if not conn.alive:
            return
        # Only the table's own entries: a flow that was refused on insert
        # shares keys with one that is in the table and must not evict it.
        if self._map.get(conn.in_key, (None,))[0] is not conn:
            return
        conn.alive = False
        del self._map[conn.in_key]
        if conn.out_key is not None and self._map.get(conn.out_key, (None,))[0] is conn:
            del self._map[conn.out_key]
        self._count -= 1

    def _expire(self, conn: Conn) -> None:
        self.remove(conn)
        if self._on_expire is not None:
            self._on_expire(conn)

    def expire(self, now: float, budget: int = 1 << 30) -> int:
        """Drop flows whose deadline passed, at most ``budget`` heap pops."""
        heap = self.heap
        n = 0
        while heap and heap[0][0] <= now and budget > 0:
            budget -= 1
            _, _, conn = heapq.heappop(heap)
            if not conn.alive:
                continue
            if conn.expires <= now and self.refresh is not None:
                self.refresh(conn)
            if conn.expires > now:
                # refreshed since it was queued: re-arm at the new deadline
                heapq.heappush(heap, (conn.expires, next(self._seq), conn))
                continue
            self._expire(conn)
            n += 1
        return n

    def next_deadline(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def clear(self) -> None:
        for conn in list(self):
            self._expire(conn)
        self.heap.clear()
