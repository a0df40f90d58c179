"""The Director's side of the established-flow fast path (``native.FlowTable``, C or its pure twin).

The slow path (:mod:`pylvs.core.pipeline`) is the single authority on policy: it schedules, runs the TCP state
machine, inserts TOA, answers with ICMP. Once it has forwarded a packet of a flow whose later packets need no
decision — TCP after its SYN (SYN_RECV) or in ESTABLISHED, with its TOA done; or UDP — it hands the flow to
the fast path: the tuple, the rewrite, the egress interfaces and next-hop MACs, the server's counter slot.
From then on the fast path forwards that flow's packets by itself, in batches, and punts (returns untouched)
every packet it cannot finish: a client's SYN, a TTL of 1, a frame over the MTU, a forged TOA option, anything
malformed. A TCP flow's handshake (the server's SYN-ACK, the client's ACK) and teardown (FIN, RST and their
ACKs) stay on the fast path: it moves the state with IPVS's own tables (pushed by
:meth:`FastPath.set_timeouts`) and reports each change, and the Director keeps its books from those events
(``Director._fast_events``: the flow's state and deadline, the server's active/inactive counts). The slow path
takes the punts, and when its server is removed or a next-hop MAC changes it takes the flow back.

Two copies of the deadline exist: the flow's (slow path) and the table entry's (moved by every fast
packet).  The slow path pulls the entry's in before it expires a flow (``ConnTable.refresh``); the entry's
copy is pushed whenever the slow path sets a new one.  Per-server packet and byte counters of fast packets
live in the table and are folded into the Python counters at ``tick`` and ``stats`` time; per-flow counters
(``Conn.pkts_in`` ...) count slow-path packets only.
"""

from __future__ import annotations

from pylvs import native
from pylvs._pure.flowtable import DESC  # noqa: F401 - the descriptor layout (struct pn_desc), re-exported
from pylvs.core.conntable import Conn
from pylvs.core.dest import Dest
from pylvs.core.packet import IPPROTO_TCP
from pylvs.core.tcpstate import STATES, TABLES, sCL, sCW, sES, sFW, sLA, sSR, sTW

#: TCP states the slow path hands a flow over in: SYN_RECV (right after the client's SYN was scheduled and
#: forwarded: the server's SYN-ACK and the handshake's last ACK are plain state moves) and ESTABLISHED.
HANDOVER_TCP_STATES = frozenset((sSR, sES))
#: TCP states a flow already in the fast path stays there in: those and the teardown that follows.  The fast
#: path moves the state itself (IPVS's tables, pushed by set_timeouts) and reports each change
#: (Director._fast_events); a client's SYN, which may reopen or reschedule, is always the slow path's.
FAST_TCP_STATES = frozenset((sSR, sES, sFW, sTW, sCL, sCW, sLA))
#: the tables as the fast path takes them: [table: INPUT, OUTPUT, INPUT_ONLY][class: syn fin ack rst][state]
TCP_NEXT = bytes(TABLES[t][cls][st] for t in range(3) for cls in range(4) for st in range(len(STATES)))

MODE_CODES = {"nat": 0, "dr": 1, "tun": 2, "fullnat": 3}
#: the table's capacity never exceeds this (flows beyond it simply stay on the slow path)
MAX_FAST_FLOWS = 1 << 22
#: per-server counter slots in the table (its maximum; slot 0 means "none")
DEST_SLOTS = 65536


class FastPath:
    """One FlowTable plus what maps the Director's objects onto its integer ids."""

    def __init__(self, director, capacity: int) -> None:
        self.impl = native.IMPLEMENTATION
        # Interfaces with an IPv4 address (the TUN outer source) get an index; others stay slow-path only.
        v4 = {n: next((a for a in ifc.addrs if len(a) == 4), None) for n, ifc in director.ifaces.items()}
        self.ifnames: list[str] = [n for n in director.ifaces if v4[n] is not None][: native.MAX_INTERFACES]
        self.ifindex = {n: i for i, n in enumerate(self.ifnames)}
        # Counter slots: 0 is "none"; every slot exists from the start (32 bytes each, zero pages until
        # used) so servers added at run time get one too.  Beyond them, a server's flows stay slow.
        self.table = native.FlowTable(min(capacity, MAX_FAST_FLOWS), dests=DEST_SLOTS)
        self._v4 = v4
        self._director = director
        for name in self.ifnames:
            self.set_offload(name, False)
        #: servers with a counter slot, by slot; slots of forgotten servers are reused (zeroed first)
        self.dests: dict[int, Dest] = {}
        self._free: list[int] = []
        self._owner: dict[int, object] = {}
        for s in director.services:
            for d in s.all_dests():
                self.register(s, d)
        self.set_timeouts(director.timeouts)
        self.conns: dict[int, Conn] = {}
        self.inserts_failed = 0

    def set_offload(self, name: str, offload: bool) -> None:
        """Does ``name``'s port take virtio-net headers?  Then GSO super-frames and partial checksums are
        forwarded to it whole (the live runner says so for each port); otherwise they are finished or cut up
        first."""
        i = self.ifindex.get(name)
        if i is not None:
            ifc = self._director.ifaces[name]
            self.table.set_interface(i, ifc.mac, self._v4[name], min(ifc.mtu, 65535), offload)

    def register(self, svc, d: Dest) -> None:
        """Give a server a counter slot (once: a server keeps its slot for the life of the process)."""
        if d.fid:
            return
        if self._free:
            fid = self._free.pop()
        elif len(self.dests) < DEST_SLOTS - 1:
            fid = len(self.dests) + 1
        else:
            return  # no slot: this server's flows stay on the slow path
        self.dests[fid] = d
        d.fid = fid
        self._owner[id(d)] = svc

    def unregister(self, d: Dest) -> None:
        """A server no flow points at any more is forgotten: its counters are folded in, its slot freed."""
        if not d.fid or self.dests.get(d.fid) is not d:
            return
        self._fold(d)
        del self.dests[d.fid]
        del self._owner[id(d)]
        self._free.append(d.fid)
        d.fid = 0

    def set_timeouts(self, timeouts) -> None:
        self.table.set_timeouts(float(timeouts["established"]), float(timeouts["udp"]))
        self.table.set_tcp_states(TCP_NEXT, [float(timeouts[name.lower()]) for name in STATES])

    # ------------------------------------------------------------ flows in and out of the fast path

    @staticmethod
    def eligible(c: Conn) -> bool:
        """Would the next ordinary packet of this flow change nothing but the deadline and counters?"""
        if c.dest is None or not c.dest.available or not c.alive or c.dest.fid == 0:
            return False
        if c.proto == IPPROTO_TCP:
            # Handed over at the SYN or in ESTABLISHED; kept through the teardown, whose state changes the fast
            # path makes.
            if c.state not in HANDOVER_TCP_STATES and (c.fslot < 0 or c.state not in FAST_TCP_STATES):
                return False
            # FULLNAT's TOA goes into the handshake's last ACK (the server's SYN-ACK gets its MSS lowered to
            # leave room for it): the fast path does both for a flow it takes at the SYN (set_fast's toa_due);
            # one that reached another state without its TOA stays with the slow path.
            if c.mode == "fullnat" and c.svc.toa and not c.toa_done and c.state != sSR:
                return False
        return True

    def sync(self, c: Conn, egress: str, nexthop_mac: bytes | None) -> None:
        """After the slow path forwarded a packet of ``c`` toward ``egress``: hand it over, or take it back."""
        if not self.eligible(c) or nexthop_mac is None:
            self.release(c)
            return
        in_if = self.ifindex.get(c.in_ifname)
        out_if = self.ifindex.get(egress)
        if in_if is None or out_if is None:
            return
        t = self.table
        if c.fslot < 0:
            slot = t.insert(c.proto, c.caddr, c.cport, c.vaddr, c.vport, c.laddr, c.lport, c.daddr, c.dport,
                            MODE_CODES[c.mode], c.out_key is not None, c.expires)
            if slot < 0:
                self.inserts_failed += 1  # the table is full (or a stale twin holds the tuple): stay slow
                return
            c.fslot = slot
            self.conns[slot] = c
            c.rw_in = c.rw_out = None  # the slow path's header images (Conn.image): made again if it needs them
        # (an entry already there got the slow path's new deadline from Director._set_timeout)
        toa = c.svc.toa_kind if c.mode == "fullnat" and c.proto == IPPROTO_TCP and c.svc.toa else 0
        t.set_fast(c.fslot, in_if, c.client_mac, out_if, nexthop_mac, c.dest.fid, toa, c.state,
                   2 if c.no_output else 0, bool(toa) and not c.toa_done)

    def release(self, c: Conn) -> None:
        """Take the flow back to the slow path (its entry leaves the table)."""
        if c.fslot < 0:
            return
        slot = c.fslot
        c.fslot = -1
        if self.conns.get(slot) is c:
            # Whatever the fast path extended the deadline to is the flow's deadline.
            c.expires = max(c.expires, self.table.expires(slot))
            del self.conns[slot]
            self.table.remove(slot)

    def refresh(self, c: Conn) -> None:
        """``ConnTable.refresh``: pull in a deadline the fast path moved."""
        if c.fslot >= 0:
            c.expires = max(c.expires, self.table.expires(c.fslot))

    def push_deadline(self, c: Conn) -> None:
        if c.fslot >= 0:
            self.table.set_expires(c.fslot, c.expires)

    def evict(self, pred=None) -> int:
        """Take back every flow (``pred(conn)`` true): a server removed, a neighbour's MAC changed."""
        n = 0
        for c in [c for c in self.conns.values() if pred is None or pred(c)]:
            self.release(c)
            n += 1
        return n

    def sweep(self, now: float, budget: int) -> None:
        """The table's own expiry sweep: an entry past its deadline goes back to the slow path, whose
        deadline check (with the pulled-in time) then decides the flow's fate."""
        for slot in self.table.expire(now, budget):
            c = self.conns.pop(slot, None)
            if c is not None:
                c.fslot = -1  # the entry is gone already; its deadline had passed, so nothing to pull

    # ------------------------------------------------------------ counters

    def fold_counters(self) -> None:
        """Add the fast path's per-server counters into the servers' and services' own."""
        for d in self.dests.values():
            self._fold(d)

    def _fold(self, d: Dest) -> None:
        pi, po, bi, bo = self.table.dest_counters(d.fid, reset=True)
        if pi or po:
            s = self._owner[id(d)]
            for o in (d, s):
                o.pkts_in += pi
                o.pkts_out += po
                o.bytes_in += bi
                o.bytes_out += bo

    def stats(self) -> dict:
        st = self.table.stats()
        mem = self.table.memory_bytes()
        st.update(implementation=self.impl, flows=len(self.table), capacity=self.table.capacity,
                  inserts_failed=self.inserts_failed, memory_bytes=mem,
                  bytes_per_flow=mem // self.table.capacity)
        return st
