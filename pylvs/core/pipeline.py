"""The director: frame in (with its interface and the time), actions out.

Sans-I/O: nothing here opens a socket, touches an event loop or reads a clock.
Live I/O, ``pylvs replay``, tests and fuzzers all drive :meth:`Director.handle`
and :meth:`Director.tick` and carry out the returned actions.

The packet walk follows IPVS (``ip_vs_in`` / ``ip_vs_out``): look the flow up by
either tuple; a miss to a virtual service schedules a new flow (TCP only on a
SYN, never on an RST); the state machine advances; the mode's rewrite runs; the
next hop comes from routes and the neighbour table.  Every refusal is a
:class:`Drop` with a reason, counted in :attr:`Director.drops`.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from pylvs.core.arp import ARP_REQUEST, parse_arp, reply_frame, request_frame
from pylvs.core.conntable import IN, OUT, Conn, ConnTable
from pylvs.core.fastpath import DESC, FastPath
from pylvs.core.offload import punted_frames
from pylvs.core.icmp import (
    ICMP_DEST_UNREACH, ICMP_EXC_TTL, ICMP_FRAG_NEEDED, ICMP_TIME_EXCEEDED,
    echo_reply_frame, error_frame, fix_icmp_checksum, may_send_error_about,
)
from pylvs.core.modes import IPIP_OVERHEAD, RULES, encap_ipip, fragment, xlate_in, xlate_out
from pylvs.core.packet import (
    BROADCAST, ETH_HLEN, ICMP_ECHO, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    RELATED_ICMP_TYPES, TH_ACK, TH_RST, TH_SYN, Packet, parse_icmp_inner, parse_ipv4,
)
from pylvs.core.rewrite import DST, SRC, dec_ttl, rewrite_tuple, set_addr, set_macs, set_port
from pylvs.core.routing import ARP_RETRANS, ARP_TRIES, Iface, Neighbors, Pending, Routes
from pylvs.core.service import Service, build_services
from pylvs.core.tcpstate import DIR_INPUT, DIR_INPUT_ONLY, DIR_OUTPUT, ROWS, STATES, sES, sSR, sTW
from pylvs.core.toa import clamp_mss, insert_toa, strip_toa

_ETH_IP = b"\x08\x00"
_ETH_ARP = b"\x08\x06"
#: ``_tuple_new(Send, (...))`` is ``Send(...)`` without the NamedTuple's Python-level ``__new__``: the slow
#: path makes one per forwarded packet.
_tuple_new = tuple.__new__


class Send(NamedTuple):
    """Transmit ``frame`` out of ``interface``.  ``kind`` is "forward" (a client
    or server packet passed on), "reply" (the director answers: ARP, ICMP) or
    "resolve" (an ARP request for a next hop)."""

    interface: str
    frame: bytes
    kind: str = "forward"


class Drop(NamedTuple):
    reason: str


class Hold(NamedTuple):
    """The packet waits for ARP resolution of its next hop (bounded queue)."""

    reason: str


class Absorb(NamedTuple):
    """Consumed by the director with nothing to send (e.g. an ARP reply learned)."""

    reason: str


Action = Send | Drop | Hold | Absorb


def verdict(actions: list[Action]) -> str:
    """One word for what happened to an input frame (the replay log's field)."""
    kinds = {a.kind for a in actions if isinstance(a, Send)}
    if "forward" in kinds:
        return "forward"
    if any(isinstance(a, Hold) for a in actions):
        return "hold"
    if kinds:
        return "reply"
    if any(isinstance(a, Drop) for a in actions):
        return "drop"
    return "absorb"


class Director:
    """A load balancer's whole datapath state, built from a :class:`pylvs.config.Config`."""

    def __init__(self, config, *, macs: dict[str, bytes] | None = None) -> None:
        self.config = config
        macs = macs or {}
        self.ifaces: dict[str, Iface] = {}
        for ic in config.interfaces:
            mac = macs.get(ic.name, ic.mac)
            if mac is None:
                raise ValueError(f"interface {ic.name}: no MAC address (set interface.mac for replay)")
            self.ifaces[ic.name] = Iface(
                name=ic.name, mac=mac, mtu=ic.mtu,
                addrs=[a.ip.packed for a in ic.addresses], nets=[a.network for a in ic.addresses],
            )
        self.routes = Routes(self.ifaces, config.routes)
        self.neigh = Neighbors(config.neighbors, config.table.neighbor_queue)
        self.services: list[Service] = build_services(config)
        #: services removed by a reload whose flows have not all ended yet
        self.retired_services: list[Service] = []
        self.timeouts = dict(config.timeouts)
        self._tcp_timeouts = [float(self.timeouts[name.lower()]) for name in STATES]
        self.table = ConnTable(config.table.max_connections, on_expire=self._on_expire)
        self.sloppy_tcp = config.table.sloppy_tcp
        self.icmp_echo = config.table.icmp_echo
        self.drops: Counter[str] = Counter()
        #: the last exception handle_batch caught (for the runner's log), None if none
        self.last_internal_error: Exception | None = None
        self.events: Counter[str] = Counter()
        self._ip_id = 0
        #: live flows per VIP/LIP: an address a reload removed is answered for until its last flow ends
        self._addr_refs: Counter[bytes] = Counter()
        #: bumped whenever local_addrs changes (the runner then rebuilds its AF_PACKET filters)
        self.addrs_version = 0
        self.local_addrs: set[bytes] = set()
        self.refresh_addresses()
        #: the established-flow fast path (C, or its pure twin: ``self.fast.impl`` says which)
        self.fast = FastPath(self, config.table.max_connections)
        self.table.refresh = self.fast.refresh

    # ------------------------------------------------------------------ entry points

    def handle(self, frame: bytes | bytearray, interface: str, now: float) -> list[Action]:
        """Process one Ethernet frame that arrived on ``interface`` at time ``now``."""
        heap = self.table.heap
        if heap and heap[0][0] <= now:  # (what expire checks first: no call when nothing is due)
            self.table.expire(now, budget=64)  # incremental sweep: bounded work per packet
        iface = self.ifaces.get(interface)
        if iface is None:
            return self._drop("unknown_interface")
        if len(frame) < ETH_HLEN:
            return self._drop("eth_truncated")
        dmac = frame[0:6]
        etype = frame[12:14]
        if etype == _ETH_ARP:
            if dmac != iface.mac and dmac != BROADCAST:
                return self._drop("not_for_us")
            return self._arp(frame, iface)
        if dmac != iface.mac:
            return self._drop("not_for_us")
        if etype != _ETH_IP:
            return self._drop("unsupported_ethertype")
        p = parse_ipv4(bytearray(frame))
        if isinstance(p, str):
            return self._drop(p)
        if p.proto == IPPROTO_TCP or p.proto == IPPROTO_UDP:
            return self._l4(p, iface, now)
        if p.proto == IPPROTO_ICMP:
            return self._icmp(p, iface, now)
        return self._drop("unsupported_protocol" if p.dst in self.local_addrs else "not_for_service")

    def handle_batch(self, buf: bytearray, desc: bytearray, n: int, interface: str,
                     now: float) -> list[tuple[int, list[Action]]]:
        """Process ``n`` frames that arrived on ``interface``, laid out in ``buf`` as ``desc`` says.

        ``desc`` holds ``n`` descriptors (:data:`pylvs.core.fastpath.DESC`: offset, length, verdict,
        reason).  The fast path forwards what it can in place: those frames get verdict = the egress
        interface's index in ``self.fast.ifnames`` and their new offset/length (TUN grows a frame 20 bytes
        to the left, so leave that much headroom before each).  The others (verdict -1) go through
        :meth:`handle`; their actions come back as ``(index, actions)`` in arrival order.
        """
        ifx = self.fast.ifindex.get(interface, -1)
        self.table.expire(now, budget=64)
        out: list[tuple[int, list[Action]]] = []
        process = self.fast.table.process_until_punt
        drain = self.fast.table.drain_events
        dview = memoryview(desc)
        size = DESC.size
        i = 0
        while i < n:
            # Up to and including the next punt, so each punted frame is handled before the frames after it
            # are looked at: a FIN, an RST or an ARP reply changes what they should get.
            i += process(buf, dview[i * size:n * size], n - i, ifx, now)
            events = drain()
            if events:
                self._fast_events(events, now)
            verdict, frames = punted_frames(buf, desc, i - 1, self)
            if verdict >= 0:
                continue
            # A punted GSO super-frame arrives here cut into wire-sized segments (pylvs/core/offload.py).
            acts: list[Action] = []
            for f in frames:
                try:
                    acts += self.handle(f, interface, now)
                except Exception as e:  # the core must never raise; one bad frame never costs the batch
                    self.drops["internal_error"] += 1
                    self.last_internal_error = e
                    acts.append(Drop("internal_error"))
            out.append((i - 1, acts))
        return out

    def tick(self, now: float) -> list[Action]:
        """Timers: expire flows and templates, retry or give up ARP resolution."""
        self.fast.sweep(now, 4096)
        self.fast.fold_counters()
        self.table.expire(now)
        for s in self.services:
            s.expire_templates(now)
        if self.retired_services:
            self.forget_idle_retired()
        out: list[Action] = []
        for key, pend in list(self.neigh.pending.items()):
            if now - pend.last < ARP_RETRANS:
                continue
            if pend.tries >= ARP_TRIES:
                del self.neigh.pending[key]
                self.drops["neighbor_unresolved"] += len(pend.frames)
                out.extend(Drop("neighbor_unresolved") for _ in pend.frames)
                continue
            out.append(self._arp_request(key[0], key[1], pend, now))
        return out

    # ------------------------------------------------------------------ helpers

    def _drop(self, reason: str) -> list[Action]:
        self.drops[reason] += 1
        return [Drop(reason)]

    def _next_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def _on_expire(self, c: Conn) -> None:
        self.fast.release(c)
        d = c.dest
        if d is not None:
            if c.inactive:
                d.inactive -= 1
            else:
                d.active -= 1
        t = c.template
        if t is not None:
            t.n_control -= 1
        c.svc.live -= 1
        refs = self._addr_refs
        for a in (c.vaddr, c.laddr) if c.mode == "fullnat" else (c.vaddr,):
            refs[a] -= 1
            if refs[a] <= 0:
                del refs[a]
                if a not in self._configured:
                    self.refresh_addresses()  # the last flow of an address a reload removed
        self.events["conns_expired"] += 1

    def _set_timeout(self, c: Conn, now: float) -> None:
        if c.proto == IPPROTO_TCP:
            t = self._tcp_timeouts[c.state]
        else:
            t = self.timeouts["udp"]
        self.table.set_expiry(c, now + t)
        if c.fslot >= 0:
            self.fast.push_deadline(c)

    def _set_state(self, c: Conn, direction: int, flags: int, now: float) -> None:
        """IPVS ``set_tcp_state``: pick the table, move, keep active/inactive counts."""
        tdir = DIR_INPUT if direction == IN else DIR_OUTPUT
        if c.no_output:
            if direction == OUT:
                c.no_output = False
            else:
                tdir = DIR_INPUT_ONLY
        new = ROWS[tdir][flags & 0xFF][c.state]  # tcpstate.next_state, as subscripts
        d = c.dest
        if new != c.state and d is not None:
            if not c.inactive and new != sES:
                d.active -= 1
                d.inactive += 1
                c.inactive = True
            elif c.inactive and new == sES:
                d.active += 1
                d.inactive -= 1
                c.inactive = False
        c.state = new
        # _set_timeout, inline (every TCP packet of the slow path comes here)
        self.table.set_expiry(c, now + self._tcp_timeouts[new])
        if c.fslot >= 0:
            self.fast.push_deadline(c)

    def _fast_events(self, events: list[int], now: float) -> None:
        """What the fast path did to flows it holds (the handshake's SYN-ACK and ACK, FIN, RST, the teardown's
        ACKs; FULLNAT's TOA and MSS clamp): the books the slow path keeps for its own packets — the flow's
        state and deadline, the server's active/inactive counts (lc/wlc schedule by them), TOA done, the
        counters — kept here, before the next frame is looked at."""
        conns, timeouts = self.fast.conns, self._tcp_timeouts
        for ev in events:
            c = conns.get(ev >> 8)
            if c is None:
                continue
            if ev & 0x80:  # an output packet of a NOOUTPUT flow: it uses the full tables now
                c.no_output = False
            if ev & 0x40:  # the TOA went into the handshake's last ACK (as _toa does it)
                c.toa_done = True
                self.events["toa_inserted"] += 1
            if ev & 0x20:  # the server's SYN-ACK had its MSS lowered (as _forward_out does it)
                self.events["mss_clamped"] += 1
            new = ev & 0x1F
            d = c.dest
            if new != c.state and d is not None:
                if not c.inactive and new != sES:
                    d.active -= 1
                    d.inactive += 1
                    c.inactive = True
                elif c.inactive and new == sES:
                    d.active += 1
                    d.inactive -= 1
                    c.inactive = False
            c.state = new
            self.table.set_expiry(c, now + timeouts[new])

    # ------------------------------------------------------------------ ARP

    def _arp(self, frame: bytes | bytearray, iface: Iface) -> list[Action]:
        a = parse_arp(frame)
        if isinstance(a, str):
            return self._drop(a)
        out: list[Action] = []
        if a.spa != b"\x00\x00\x00\x00" and self.routes.on_link(a.spa) == iface.name:
            old = self.neigh.get(iface.name, a.spa)
            waiting = self.neigh.learn(iface.name, a.spa, a.sha)
            if old is not None and self.neigh.get(iface.name, a.spa) != old:
                # A neighbour moved: the flows the fast path sends to it carry the old MAC; take them back.
                hop = (iface.name, a.spa)
                self.events["fast_evicted_neighbor"] += self.fast.evict(lambda c: self._route_to_dest(c) == hop)
            for buf in waiting:
                buf[0:6] = a.sha
                out.append(Send(iface.name, bytes(buf), "forward"))
        if a.op == ARP_REQUEST and a.tpa in self._arp_targets[iface.name]:
            self.events["arp_replies"] += 1
            out.append(Send(iface.name, reply_frame(a, bytes(frame[6:12]), iface.mac), "reply"))
        if out:
            return out
        if a.op == ARP_REQUEST:
            return self._drop("arp_not_for_us")
        self.events["arp_absorbed"] += 1
        return [Absorb("arp_learned")]

    def _arp_request(self, ifname: str, nexthop: bytes, pend: Pending, now: float) -> Send:
        iface = self.ifaces[ifname]
        pend.tries += 1
        pend.last = now
        self.events["arp_requests"] += 1
        return Send(ifname, request_frame(iface.mac, iface.primary, nexthop), "resolve")

    # ------------------------------------------------------------------ output

    def _emit(self, ifname: str, nexthop: bytes | None, dmac: bytes | None, p: Packet,
              now: float) -> list[Action]:
        """Fill in the Ethernet header and send, fragmenting if needed (DF clear)."""
        iface = self.ifaces[ifname]
        buf = p.buf
        if p.ip_len <= iface.mtu:
            # The usual case, one frame: the general code below, without its lists and loop.
            if dmac is None:
                dmac = self.neigh.get(ifname, nexthop)
                if dmac is None:
                    return self._queue(ifname, nexthop, [buf], iface, now)
            buf[0:6] = dmac
            buf[6:12] = iface.mac
            return [_tuple_new(Send, (ifname, bytes(buf), "forward"))]
        frames = [buf]
        if p.ip_len > iface.mtu:
            if p.df:
                # Callers answer the sender with "fragmentation needed" where
                # that is allowed; here it is not (e.g. a relayed ICMP error).
                return self._drop("frag_needed")
            frames = fragment(buf, p.l3, iface.mtu)
            self.events["fragments_sent"] += len(frames)
        if dmac is None:
            dmac = self.neigh.get(ifname, nexthop)
        if dmac is None:
            return self._queue(ifname, nexthop, frames, iface, now)
        out: list[Action] = []
        for f in frames:
            set_macs(f, dmac, iface.mac)
            out.append(Send(ifname, bytes(f), "forward"))
        return out

    def _queue(self, ifname: str, nexthop: bytes, frames: list[bytearray], iface: Iface,
               now: float) -> list[Action]:
        key = (ifname, nexthop)
        pend = self.neigh.pending.get(key)
        if pend is None:
            pend = self.neigh.pending[key] = Pending()
        out: list[Action] = []
        if pend.tries < ARP_TRIES and now - pend.last >= ARP_RETRANS:
            out.append(self._arp_request(ifname, nexthop, pend, now))
        for f in frames:
            if len(pend.frames) >= self.neigh.queue_limit:
                self.drops["neighbor_queue_full"] += 1
                out.append(Drop("neighbor_queue_full"))
                continue
            f[6:12] = iface.mac
            f[12:14] = _ETH_IP
            pend.frames.append(f)
            out.append(Hold("neighbor_pending"))
        return out

    def _error(self, p: Packet, iface: Iface, icmp_type: int, code: int, rest: int,
               src_ip: bytes, reason: str) -> list[Action]:
        """Drop ``p`` with ``reason`` and, where RFC 1812 allows, answer with ICMP."""
        self.drops[reason] += 1
        out: list[Action] = [Drop(reason)]
        if may_send_error_about(p):
            self.events["icmp_errors_sent"] += 1
            frame = error_frame(p, src_ip, iface.mac, icmp_type, code, rest, self._next_id())
            out.insert(0, Send(iface.name, frame, "reply"))
        return out

    def _time_exceeded(self, p: Packet, iface: Iface) -> list[Action]:
        # RFC 1812 §4.3.2.4: a router's own address on the link the packet came in on.
        return self._error(p, iface, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0, iface.primary, "ttl_exceeded")

    def _route_to_dest(self, c: Conn) -> tuple[str, bytes] | None:
        if c.mode == "dr":
            ifn = self.routes.on_link(c.daddr)  # DR needs the RS on the same segment
            return (ifn, c.daddr) if ifn is not None else None
        return self.routes.lookup(c.daddr)

    # ------------------------------------------------------------------ TCP / UDP

    def _l4(self, p: Packet, iface: Iface, now: float) -> list[Action]:
        hit = self.table.lookup((p.proto, p.src, p.sport, p.dst, p.dport), now)
        if hit is not None:
            c, direction = hit
            if direction == IN and c.state == sTW and self._reuse_expired(c, p):
                hit = None
        if hit is None:
            svc = self._svc_by_key.get((p.proto, p.dst, p.dport))
            if svc is None:
                return self._drop("no_service" if p.dst in self.local_addrs else "not_for_service")
            if p.proto == IPPROTO_TCP:
                if p.flags & TH_RST:
                    return self._drop("tcp_rst_no_conn")  # an RST never creates an entry
                if not p.flags & TH_SYN and not self.sloppy_tcp:
                    return self._drop("tcp_no_conn")
            res = self._schedule(svc, p, iface, now)
            if not isinstance(res, Conn):
                return res
            return self._forward_in(res, p, iface, now)
        c, direction = hit
        if c.dest is not None and not c.dest.available and c.svc.expire_nodest_conn:
            # IPVS expire_nodest_conn: the server is gone, so is the flow.
            self.table.remove(c)
            self._on_expire(c)
            return self._drop("dest_unavailable")
        if direction == IN:
            return self._forward_in(c, p, iface, now)
        return self._forward_out(c, p, iface, now)

    def _reuse_expired(self, c: Conn, p: Packet) -> bool:
        """IPVS ``conn_reuse_mode``: a fresh SYN on a TIME_WAIT entry starts over."""
        if p.proto != IPPROTO_TCP or (p.flags & (TH_SYN | TH_ACK | TH_RST)) != TH_SYN:
            return False
        if c.state != sTW:
            return False
        self.table.remove(c)
        self._on_expire(c)
        self.events["conns_reused"] += 1
        return True

    def _schedule(self, svc: Service, p: Packet, iface: Iface, now: float) -> Conn | list[Action]:
        if self.table.is_full(now):
            return self._drop("conn_table_full")
        if svc.all_routed and p.ttl <= 1:
            return self._time_exceeded(p, iface)
        dest, template = svc.choose(p.src, p.sport, now)
        if dest is None:
            return self._drop("no_real_server")
        rule = RULES[dest.mode]
        if rule.routed and p.ttl <= 1:
            return self._time_exceeded(p, iface)
        if rule.snat:
            alloc = svc.allocate_local(p.proto, dest, lambda k: self.table.taken(k, now))
            if alloc is None:
                return self._drop("fullnat_no_local_port")
            laddr, lport = alloc
        else:
            laddr, lport = p.src, p.sport
        dport = dest.port if rule.port_mapping else p.dport
        c = Conn(p.proto, p.src, p.sport, p.dst, p.dport, laddr, lport, dest.addr, dport, dest, svc, dest.mode)
        c.in_ifname = iface.name
        c.client_mac = p.src_mac
        c.expires = now  # set properly by the first state transition
        if not self.table.insert(c, now):
            return self._drop("tuple_collision")
        # IPVS ip_vs_bind_dest: a new flow starts counted active; the first
        # state transition (SYN → SYN_RECV) moves it to inactive.
        dest.active += 1
        dest.conns += 1
        svc.conns += 1
        svc.live += 1
        self._addr_refs[c.vaddr] += 1
        if c.mode == "fullnat":
            self._addr_refs[c.laddr] += 1
        if template is not None:
            template.n_control += 1
            c.template = template
        self.events["conns_created"] += 1
        if p.proto != IPPROTO_TCP:
            # UDP has no ESTABLISHED: counted inactive, as ipvsadm shows it.
            dest.active -= 1
            dest.inactive += 1
            c.inactive = True
        return c

    def _advance(self, c: Conn, p: Packet, rule, iface: Iface, direction: int, mtu: int, err_src: bytes,
                 now: float) -> list[Action] | None:
        """What every forwarded packet of a flow goes through, either direction:
        TTL and path-MTU checks (answered with ICMP where allowed), the state
        machine, the counters, and the mode's header rewrite with the TTL
        decrement of routed modes.  ``mtu`` is the room the packet has (TUN: the
        egress MTU − 20).  One method rather than one per step: it runs per packet."""
        if rule.routed and p.ttl <= 1:
            return self._time_exceeded(p, iface)
        if p.ip_len > mtu and p.df:
            # RFC 1191: tell the sender the largest datagram that will fit.
            return self._error(p, iface, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu, err_src, "frag_needed")
        if p.proto == IPPROTO_TCP:
            self._set_state(c, direction, p.flags, now)
        else:
            self._set_timeout(c, now)
        # Packets and bytes (IP length, like IPVS's skb->len) for flow, service, server.
        n = p.ip_len
        s, d = c.svc, c.dest
        if direction == IN:
            c.pkts_in += 1
            c.bytes_in += n
            s.pkts_in += 1
            s.bytes_in += n
            if d is not None:
                d.pkts_in += 1
                d.bytes_in += n
        else:
            c.pkts_out += 1
            c.bytes_out += n
            s.pkts_out += 1
            s.bytes_out += n
            if d is not None:
                d.pkts_out += 1
                d.bytes_out += n
        if rule.port_mapping:
            # NAT, FULLNAT: addresses, ports and TTL in one pass over the header images made at schedule time
            # (the same bytes as dec_ttl + xlate_in/xlate_out: see rewrite_tuple).
            rewrite_tuple(p.buf, p.l3, p.l4, p.proto, c.image(direction), rule.routed)
        else:
            if rule.routed:
                dec_ttl(p.buf, p.l3)
            (xlate_in if direction == IN else xlate_out)(c, rule, p.buf, p.l3, p.l4, p.proto)
        return None

    def _sync(self, c: Conn, ifname: str, nexthop: bytes) -> None:
        """Hand the flow to the fast path or take it back (FastPath.sync) after a forwarded packet."""
        # A TCP flow outside SYN_RECV/ESTABLISHED that the fast path does not hold is not eligible, and sync
        # would only release what is not there: those packets skip the call and the neighbour lookup.
        if c.fslot >= 0 or c.state == sES or c.state == sSR or c.proto != IPPROTO_TCP:
            self.fast.sync(c, ifname, self.neigh.get(ifname, nexthop))

    def _forward_in(self, c: Conn, p: Packet, iface: Iface, now: float) -> list[Action]:
        rule = RULES[c.mode]
        route = self._route_to_dest(c)
        if route is None:
            return self._drop("no_route")
        ifname, nexthop = route
        egress = self.ifaces[ifname]
        if rule.encap and p.ip_len > 0xFFFF - IPIP_OVERHEAD and not p.df:
            # No IPv4 datagram is longer than 65535 bytes: this one cannot be encapsulated whole, and
            # fragmenting the outer header is not done (IPVS's tunnel transmitter gives up too).
            return self._drop("frag_needed")
        prev_state = c.state
        # Errors about packets to the VIP come from the VIP, as Linux sources
        # errors about local destinations from that destination.
        room = min(egress.mtu, 0xFFFF) - (IPIP_OVERHEAD if rule.encap else 0)
        stop = self._advance(c, p, rule, iface, IN, room, p.dst, now)
        if stop is not None:
            return stop
        if c.mode == "fullnat" and p.proto == IPPROTO_TCP and c.svc.toa:
            self._toa(c, p, prev_state, egress.mtu)
        if rule.encap:
            encap_ipip(p, egress.primary, c.daddr)
        out = self._emit(ifname, nexthop, None, p, now)
        self._sync(c, ifname, nexthop)
        return out

    def _toa(self, c: Conn, p: Packet, prev_state: int, mtu: int) -> None:
        """Insert our TOA where it is due; strip any the client forged, always."""
        stripped = 0
        if not c.toa_done and self._toa_due(c, p, prev_state):
            res, stripped = insert_toa(p, c.svc.toa_option(c.caddr, c.cport), mtu)
            self.events["toa_" + res] += 1
            if not p.flags & TH_SYN:
                c.toa_done = True  # once per flow: inserted, or skipped and counted
            if res != "inserted":
                stripped = strip_toa(p, c.svc.toa_kind)
        else:
            stripped = strip_toa(p, c.svc.toa_kind)
        if stripped:
            self.events["toa_stripped"] += stripped

    @staticmethod
    def _toa_due(c: Conn, p: Packet, prev_state: int) -> bool:
        """TOA goes in the ACK completing the handshake (optionally the SYN too)."""
        f = p.flags
        if f & TH_RST:
            return False
        if f & TH_SYN:
            return c.svc.toa_on_syn and not f & TH_ACK
        return bool(f & TH_ACK) and prev_state == sSR

    def _forward_out(self, c: Conn, p: Packet, iface: Iface, now: float) -> list[Action]:
        rule = RULES[c.mode]
        stop = self._advance(c, p, rule, iface, OUT, self.ifaces[c.in_ifname].mtu, iface.primary, now)
        if stop is not None:
            return stop
        if c.mode == "fullnat" and p.proto == IPPROTO_TCP and c.svc.toa and p.flags & TH_SYN:
            # The RS's MSS must leave room for the 8 TOA bytes we add inbound.
            if clamp_mss(p, len(c.svc.toa_option(c.caddr, c.cport))):
                self.events["mss_clamped"] += 1
        out = self._emit(c.in_ifname, None, c.client_mac, p, now)
        if c.fslot >= 0 or c.state == sES or c.state == sSR or c.proto != IPPROTO_TCP:  # as in _sync
            route = self._route_to_dest(c)
            if route is None:
                self.fast.release(c)
            else:
                self.fast.sync(c, route[0], self.neigh.get(*route))
        return out

    # ------------------------------------------------------------------ ICMP

    def _icmp(self, p: Packet, iface: Iface, now: float) -> list[Action]:
        t = p.icmp_type
        if t in RELATED_ICMP_TYPES:
            return self._icmp_related(p, iface, now)
        if p.dst not in self.local_addrs:
            return self._drop("not_for_service")
        if t == ICMP_ECHO and self.icmp_echo == "reply":
            self.events["icmp_echo_replies"] += 1
            return [Send(iface.name, echo_reply_frame(p, iface.mac, self._next_id()), "reply")]
        return self._drop("icmp_unsupported")

    def _icmp_related(self, p: Packet, iface: Iface, now: float) -> list[Action]:
        """Relay an ICMP error about a tracked flow (IPVS ip_vs_in_icmp/ip_vs_out_icmp).

        The quoted datagram is one the erring host received from us; reversed,
        its tuple is one of the flow's keys.  Outer and inner headers are
        rewritten so the receiver sees the error about what *it* sent.
        """
        q = parse_icmp_inner(p.buf, p)
        if isinstance(q, str):
            return self._drop(q)
        if q.proto not in (IPPROTO_TCP, IPPROTO_UDP):
            return self._drop("icmp_no_conn")
        hit = self.table.lookup((q.proto, q.dst, q.dport, q.src, q.sport), now)
        if hit is None:
            return self._drop("icmp_no_conn")
        c, direction = hit
        rule = RULES[c.mode]
        # The error must be addressed to whoever sent the quoted datagram.
        if p.dst != (c.vaddr if direction == IN else c.laddr):
            return self._drop("icmp_no_conn")
        if rule.routed and p.ttl <= 1:
            return self._drop("ttl_exceeded")  # never an ICMP error about an ICMP error
        buf = p.buf
        end = p.l3 + p.ip_len
        il3, il4 = q.off, q.off + q.ihl
        if rule.routed:
            dec_ttl(buf, p.l3)
        self.events["icmp_relayed"] += 1
        if direction == OUT:
            # From the server side: make it about client ⇄ VIP.
            set_addr(buf, il3, il4, q.proto, DST, c.vaddr, end)
            set_port(buf, il4, q.proto, 2, c.vport, end)
            if rule.snat:
                set_addr(buf, il3, il4, q.proto, SRC, c.caddr, end)
                set_port(buf, il4, q.proto, 0, c.cport, end)
                set_addr(buf, p.l3, p.l4, IPPROTO_ICMP, DST, c.caddr)
            set_addr(buf, p.l3, p.l4, IPPROTO_ICMP, SRC, c.vaddr)
            fix_icmp_checksum(buf, p.l4, end)
            return self._emit(c.in_ifname, None, c.client_mac, p, now)
        # From the client side, about a reply we sent as the VIP.
        route = self._route_to_dest(c)
        if route is None:
            return self._drop("no_route")
        ifname, nexthop = route
        if rule.port_mapping:
            set_addr(buf, il3, il4, q.proto, SRC, c.daddr, end)
            set_port(buf, il4, q.proto, 0, c.dport, end)
            set_addr(buf, p.l3, p.l4, IPPROTO_ICMP, DST, c.daddr)
        if rule.snat:
            set_addr(buf, il3, il4, q.proto, DST, c.laddr, end)
            set_port(buf, il4, q.proto, 2, c.lport, end)
            set_addr(buf, p.l3, p.l4, IPPROTO_ICMP, SRC, c.laddr)
        fix_icmp_checksum(buf, p.l4, end)
        if rule.encap:
            encap_ipip(p, self.ifaces[ifname].primary, c.daddr)
        return self._emit(ifname, nexthop, None, p, now)

    # ------------------------------------------------------------------ introspection

    def refresh_addresses(self) -> None:
        """The addresses the director owns or answers for: its own, the configured VIPs and LIPs, and any
        other still used by a live flow (a reload took it away; it is let go when the flow ends)."""
        vips = {s.addr for s in self.services}
        lips = {lip for s in self.services for lip in s.lips}
        self._configured = vips | lips
        ours = self._configured | set(self._addr_refs)
        self._svc_by_key = {(s.proto, s.addr, s.port): s for s in self.services}
        local = ours | {a for i in self.ifaces.values() for a in i.addrs}
        if local != self.local_addrs:
            self.local_addrs = local
            self.addrs_version += 1
        self._arp_targets = {n: ours | set(i.addrs) for n, i in self.ifaces.items()}

    def set_timeouts(self, timeouts) -> None:
        """New timeouts (a reload): deadlines set from now on use them, existing ones stand."""
        self.timeouts = dict(timeouts)
        self._tcp_timeouts = [float(self.timeouts[name.lower()]) for name in STATES]
        self.fast.set_timeouts(self.timeouts)

    def reconfigure(self, config) -> list[str]:
        """Apply a new, validated configuration as a difference (:mod:`pylvs.core.reconfig`)."""
        from pylvs.core import reconfig

        return reconfig.apply(self, config)

    def set_health(self, svc: Service, dest, healthy: bool | None) -> None:
        """A health check's verdict on one server of ``svc`` (None: no longer checked)."""
        if dest.healthy is healthy:
            return
        was = dest.available
        dest.healthy = healthy
        dest.settle()
        svc.reschedule()
        if was and not dest.available:
            self.dest_unavailable(dest)
        self.events["health_" + ("unchecked" if healthy is None else "up" if healthy else "down")] += 1

    def forget_idle_retired(self) -> None:
        """Drop retired services and servers no flow points at any more."""
        for s in self.retired_services:
            if s.live <= 0:
                for d in s.all_dests():
                    self.fast.unregister(d)
        self.retired_services = [s for s in self.retired_services if s.live > 0]
        for s in self.services:
            for key, d in list(s.retired.items()):
                if d.active + d.inactive + d.persist == 0:
                    del s.retired[key]
                    self.fast.unregister(d)

    def find_service(self, proto: int, addr: bytes, port: int) -> Service | None:
        return self._svc_by_key.get((proto, addr, port))

    def dest_unavailable(self, dest) -> None:
        """A server left its service (reload, control): its flows go back to the slow path, which applies
        the service's ``expire_nodest_conn`` choice to their next packet."""
        dest.available = False
        self.fast.evict(lambda c: c.dest is dest)

    def stats(self) -> dict:
        """Counters for logs, the CLI and tests (plain data)."""
        self.fast.fold_counters()
        return {
            "fast_path": self.fast.stats(),
            "connections": len(self.table),
            "drops": dict(sorted(self.drops.items())),
            "events": dict(sorted(self.events.items())),
            "services": [s.stats() for s in self.services],
        }


__all__ = ["Director", "Send", "Drop", "Hold", "Absorb", "Action", "verdict"]
