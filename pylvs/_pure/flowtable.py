"""The pure-Python twin of ``pylvs._native.FlowTable`` (native/flowtab.c, native/fastpath.c).

Same constructor, methods, results and byte-for-byte output; the differential tests hold the two together.
What differs is only how it is stored: a dict per key instead of hash chains in preallocated memory (the
dict's own hash is CPython's keyed SipHash, PEP 456), so ``memory_bytes`` is an estimate here.

Slots are handed out as in C: the most recently freed first, else the next never-used one; the expiry sweep
walks slots ``[0, high-water)`` from a cursor, ``budget`` at a time.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

from pylvs._pure.checksum import checksum, complete_checksum, csum_fold, csum_partial, csum_replace2, csum_replace_bytes
from pylvs._pure.siphash import siphash13

DESC = struct.Struct("=IIhHHBB")  # struct pn_desc: off, len, verdict, reason, gso_size, gso_type, flags
DESC_SIZE = DESC.size
ENTRY_SIZE = 64
MAX_INTERFACES = 32
# desc.flags (native/pylvs_native.h): the L4 checksum is partial (only the pseudo-header sum: whoever sends the
# frame on finishes it), or the kernel verified it already.
CSUM_PARTIAL = 1
CSUM_VALID = 2
# desc.gso_type: the virtio-net GSO types (include/uapi/linux/virtio_net.h)
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 0, 1, 3, 4, 5, 0x80

NAT, DR, TUN, FULLNAT = range(4)
IN, OUT = 0, 1
PUNT_NAMES = (
    "not_ipv4", "malformed", "ip_options", "fragment", "protocol", "no_flow", "not_fast",
    "expired", "tcp_flags", "ttl", "mtu", "toa", "headroom", "interface", "gso",
)
(P_NOT_IPV4, P_MALFORMED, P_IP_OPTIONS, P_FRAGMENT, P_PROTO, P_NO_FLOW, P_NOT_FAST, P_EXPIRED,
 P_TCP_FLAGS, P_TTL, P_MTU, P_TOA, P_HEADROOM, P_IFACE, P_GSO) = range(len(PUNT_NAMES))
_PARTIAL = 2  # _patch_l4's third kind of checksum, after TCP (False) and UDP (True)
TCP_NSTATES = 11
TCP_ES = 1
EVENTS_MAX = 256
# An event is slot << 8 | flags | new state (the low 5 bits; pylvs_native.h PN_EV_*).  Flags:
EV_OUTPUT_SEEN = 0x80  # an output packet of a NOOUTPUT flow (it uses the full tables now)
EV_TOA = 0x40  # FULLNAT: the TOA went into this ACK
EV_MSS = 0x20  # FULLNAT with TOA: the server's SYN-ACK had its MSS lowered
TOA_LEN = 8  # the IPv4 TOA option: kind, length, port, address
TCP_SR = 3

_u16 = struct.Struct("!H")


class _Entry:
    __slots__ = ("proto", "caddr", "cport", "vaddr", "vport", "laddr", "lport", "daddr", "dport", "mode",
                 "has_out", "fast", "expires", "in_if", "out_if", "client_mac", "rs_mac", "dest_id", "toa_kind",
                 "state", "in_table", "toa_due")


def _addr(a) -> bytes:
    a = bytes(a)
    if len(a) != 4:
        raise ValueError("an IPv4 address must be 4 bytes")
    return a


def _port(p: int) -> int:
    p = int(p)
    if not 0 <= p <= 65535:
        raise ValueError("a port must be 0..65535")
    return p


def _proto(p: int) -> int:
    if not 0 <= p <= 255:
        raise ValueError("proto must be 0..255")
    return p


def _mac(m) -> bytes:
    m = bytes(m)
    if len(m) != 6:
        raise ValueError("a MAC address must be 6 bytes")
    return m


class FlowTable:
    """Flow table and established-flow fast path (twin of pylvs._native.FlowTable)."""

    def __init__(self, capacity: int, key: bytes | None = None, dests: int = 4096) -> None:
        if key is None:
            key = os.urandom(16)
        key = bytes(key)
        if len(key) != 16:
            raise ValueError("key must be 16 bytes")
        if not (1 <= capacity <= 1 << 30 and 1 <= dests <= 65536):
            raise ValueError("capacity must be 1..2**30 and dests 1..65536")
        self._capacity = int(capacity)
        self._key = key
        self._ndests = int(dests)
        self._e: dict[int, _Entry] = {}
        self._index: dict[tuple, int] = {}
        self._free: list[int] = []
        self._hw = 0
        self._cursor = 0
        self._dests: dict[int, list[int]] = {}
        self._ifaces: dict[int, tuple[bytes, bytes, int]] = {}
        self._tcp_timeout = 900.0
        self._udp_timeout = 300.0
        self._forwarded = 0
        self._punts = [0] * len(PUNT_NAMES)
        # TCP state changes of fast flows, done here once the tables are pushed (native/pylvs_native.h)
        self._tcp_next: bytes | None = None
        self._tcp_to: list[float] = []
        self._events: list[int] = []

    # ---------------------------------------------------------------- table

    capacity = property(lambda self: self._capacity)
    key = property(lambda self: self._key)

    def __len__(self) -> int:
        return len(self._e)

    def memory_bytes(self) -> int:
        """An estimate (dict and object overheads), not an allocation as in C."""
        return (sys.getsizeof(self._e) + sys.getsizeof(self._index) + len(self._e) * (
            sys.getsizeof(_Entry()) + 19 * 8) + len(self._index) * 100)

    def set_interface(self, index: int, mac, addr, mtu: int, offload: bool = False) -> None:
        if not 0 <= index < MAX_INTERFACES:
            raise ValueError(f"interface index must be 0..{MAX_INTERFACES - 1}")
        if not 1 <= mtu <= 65535:
            raise ValueError("mtu must be 1..65535")
        self._ifaces[index] = (_mac(mac), _addr(addr), int(mtu), bool(offload))

    def set_timeouts(self, tcp: float, udp: float) -> None:
        self._tcp_timeout = float(tcp)
        self._udp_timeout = float(udp)

    def hash(self, proto: int, a, ap: int, b, bp: int) -> int:
        _proto(proto)
        msg = bytes([proto]) + _addr(a) + _addr(b) + _u16.pack(_port(ap)) + _u16.pack(_port(bp))
        return siphash13(self._key, msg)

    def insert(self, proto, caddr, cport, vaddr, vport, laddr, lport, daddr, dport, mode, has_out,
               expires) -> int:
        ik = (_proto(proto), _addr(caddr), _port(cport), _addr(vaddr), _port(vport))
        ok = (proto, _addr(daddr), _port(dport), _addr(laddr), _port(lport))
        if not 0 <= mode <= FULLNAT:
            raise ValueError("mode must be 0..3 (nat, dr, tun, fullnat)")
        if len(self._e) >= self._capacity:
            return -1
        if ik in self._index or (has_out and ok in self._index):
            return -2
        if self._free:
            slot = self._free.pop()
        else:
            slot = self._hw
            self._hw += 1
        e = _Entry()
        e.proto, e.caddr, e.cport, e.vaddr, e.vport = ik
        _, e.daddr, e.dport, e.laddr, e.lport = ok
        e.mode = mode
        e.has_out = bool(has_out)
        e.fast = False
        e.expires = float(expires)
        e.in_if = e.out_if = e.dest_id = e.toa_kind = e.state = e.in_table = 0
        e.toa_due = False
        e.client_mac = e.rs_mac = b"\x00" * 6
        self._e[slot] = e
        self._index[ik] = slot << 1 | IN
        if e.has_out:
            self._index[ok] = slot << 1 | OUT
        return slot

    def lookup(self, proto: int, src, sport: int, dst, dport: int) -> int:
        return self._index.get((_proto(proto), _addr(src), _port(sport), _addr(dst), _port(dport)), -1)

    def remove(self, slot: int) -> bool:
        e = self._e.pop(slot, None)
        if e is None:
            return False
        # pop, not del: a flow whose outbound tuple equals its inbound one holds a single index entry here
        # (C links it twice into one chain and unlinks both)
        self._index.pop((e.proto, e.caddr, e.cport, e.vaddr, e.vport), None)
        if e.has_out:
            self._index.pop((e.proto, e.daddr, e.dport, e.laddr, e.lport), None)
        self._free.append(slot)
        return True

    def _entry(self, slot: int) -> _Entry:
        e = self._e.get(slot)
        if e is None:
            raise KeyError(f"no flow in slot {slot}")
        return e

    def get(self, slot: int) -> dict:
        e = self._entry(slot)
        return {k: getattr(e, k) for k in _Entry.__slots__}

    def set_fast(self, slot: int, in_if: int, client_mac, out_if: int, rs_mac, dest_id: int, toa_kind: int,
                 state: int = TCP_ES, in_table: int = 0, toa_due: bool = False) -> None:
        e = self._entry(slot)
        if not (0 <= in_if < MAX_INTERFACES and 0 <= out_if < MAX_INTERFACES and 0 <= dest_id < self._ndests
                and 0 <= toa_kind <= 255):
            raise ValueError("interface, dest_id or toa_kind out of range")
        if not (0 <= state < TCP_NSTATES and in_table in (0, 2)):
            raise ValueError("state must be 0..10 and in_table 0 or 2")
        e.client_mac, e.rs_mac = _mac(client_mac), _mac(rs_mac)
        e.in_if, e.out_if, e.dest_id, e.toa_kind = in_if, out_if, dest_id, toa_kind
        e.state, e.in_table = state, in_table
        e.toa_due = bool(toa_due and toa_kind)  # FULLNAT: the handshake's last ACK gets the TOA here
        e.fast = True

    def set_tcp_states(self, nxt, timeouts) -> None:
        nxt = bytes(nxt)
        if len(nxt) != 3 * 4 * TCP_NSTATES:
            raise ValueError(f"next must be {3 * 4 * TCP_NSTATES} bytes")
        if any(b >= TCP_NSTATES for b in nxt):
            raise ValueError("a state in next is out of range")
        to = [float(x) for x in timeouts]
        if len(to) != TCP_NSTATES:
            raise ValueError("timeouts must be a sequence of 11 numbers")
        self._tcp_next, self._tcp_to = nxt, to

    def drain_events(self) -> list[int]:
        ev, self._events = self._events, []
        return ev

    def clear_fast(self, slot: int) -> None:
        self._entry(slot).fast = False

    def expires(self, slot: int) -> float:
        return self._entry(slot).expires

    def set_expires(self, slot: int, t: float) -> None:
        self._entry(slot).expires = float(t)

    def expire(self, now: float, budget: int = 0xFFFFFFFF) -> list[int]:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        out = []
        hw = self._hw
        for _ in range(min(budget, hw)):
            slot = self._cursor
            self._cursor = 0 if slot + 1 >= hw else slot + 1
            e = self._e.get(slot)
            if e is not None and e.expires <= now:
                self.remove(slot)
                out.append(slot)
        return out

    def dest_counters(self, dest_id: int, reset: bool = False) -> tuple[int, int, int, int]:
        if not 0 <= dest_id < self._ndests:
            raise ValueError("dest_id out of range")
        c = self._dests.get(dest_id, [0, 0, 0, 0])
        if reset:
            self._dests.pop(dest_id, None)
        return tuple(c)

    def stats(self) -> dict:
        d = {"forwarded": self._forwarded}
        d.update((f"punt_{n}", v) for n, v in zip(PUNT_NAMES, self._punts))
        return d

    # ---------------------------------------------------------------- fast path

    def process(self, buf, desc, n: int, ifindex: int, now: float) -> int:
        return self._process(buf, desc, n, ifindex, now, stop=False)

    def process_until_punt(self, buf, desc, n: int, ifindex: int, now: float) -> int:
        """Like :meth:`process`, but stop right after the first punt; returns how many descriptors were
        consumed (the last one is the punt, if any)."""
        return self._process(buf, desc, n, ifindex, now, stop=True)

    @staticmethod
    def _check_buffers(buf, desc, n: int) -> None:
        bv, dv = memoryview(buf), memoryview(desc)
        if bv.readonly or dv.readonly:
            raise TypeError("process() needs writable buffers")
        if n < 0 or len(dv) < n * DESC_SIZE:
            raise ValueError("desc holds fewer than n descriptors")
        if n and len(bv) and _overlap(bv, dv, n * DESC_SIZE):
            raise ValueError("desc and buf share memory")

    def _process(self, buf, desc, n: int, ifindex: int, now: float, stop: bool) -> int:
        self._check_buffers(buf, desc, n)
        punts = 0
        ok_if = ifindex in self._ifaces
        for i in range(n):
            off, ln, _, _, gso_size, gso_type, flags = DESC.unpack_from(desc, i * DESC_SIZE)
            if ok_if:
                r, off, ln, egress, flags = self._one(buf, off, ln, flags, gso_type, gso_size, ifindex, now)
            else:
                r, egress = P_IFACE, -1
            if r < 0:
                DESC.pack_into(desc, i * DESC_SIZE, off, ln, egress, 0, gso_size, gso_type, flags)
                self._forwarded += 1
            else:
                DESC.pack_into(desc, i * DESC_SIZE, off, ln, -1, r, gso_size, gso_type, flags)
                self._punts[r] += 1
                punts += 1
                if stop:
                    return i + 1
        return n if stop else punts

    def _one(self, buf, off: int, ln: int, flags: int, gso_type: int, gso_size: int, ifindex: int, now: float):
        punt = (lambda r: (r, off, ln, -1, flags))
        if off > len(buf) or ln > len(buf) - off:
            return punt(P_MALFORMED)
        in_mac = self._ifaces[ifindex][0]
        if ln < 14 or buf[off:off + 6] != in_mac or buf[off + 12:off + 14] != b"\x08\x00":
            return punt(P_NOT_IPV4)
        ip = off + 14
        avail = ln - 14
        if avail < 20 or buf[ip] >> 4 != 4 or (buf[ip] & 0x0F) < 5:
            return punt(P_MALFORMED)
        if buf[ip] & 0x0F != 5:
            return punt(P_IP_OPTIONS)
        total = _u16.unpack_from(buf, ip + 2)[0]
        if total < 20 or total > avail or checksum(bytes(buf[ip:ip + 20])) != 0:
            return punt(P_MALFORMED)
        if _u16.unpack_from(buf, ip + 6)[0] & 0x3FFF:
            return punt(P_FRAGMENT)
        proto = buf[ip + 9]
        l4 = ip + 20
        l4len = total - 20
        udp = proto == 17
        pseudo = csum_partial(bytes(buf[ip + 12:ip + 20])) + proto + l4len
        # Not summed again where the kernel checked it, or where it is still to be computed (partial).
        trusted = bool(flags & (CSUM_PARTIAL | CSUM_VALID))
        tflags = doff = 0
        if proto == 6:
            if l4len < 20:
                return punt(P_MALFORMED)
            doff = (buf[l4 + 12] >> 4) * 4
            if doff < 20 or doff > l4len or (
                    not trusted and csum_fold(csum_partial(bytes(buf[l4:l4 + l4len]), pseudo)) != 0):
                return punt(P_MALFORMED)
            tflags = buf[l4 + 13]
            csum = l4 + 16
        elif udp:
            if l4len < 8 or _u16.unpack_from(buf, l4 + 4)[0] != l4len:
                return punt(P_MALFORMED)
            if (not trusted and _u16.unpack_from(buf, l4 + 6)[0] != 0
                    and csum_fold(csum_partial(bytes(buf[l4:l4 + l4len]), pseudo)) != 0):
                return punt(P_MALFORMED)
            csum = l4 + 6
        else:
            return punt(P_PROTO)
        if gso_type:  # passes whole only as TCP or USO over IPv4 with a partial checksum
            g = gso_type & ~GSO_ECN
            if not flags & CSUM_PARTIAL or not gso_size or not (
                    (g == GSO_TCPV4 and proto == 6) or (g == GSO_UDP_L4 and udp)):
                return punt(P_GSO)
        sport, dport = struct.unpack_from("!HH", buf, l4)
        link = self._index.get((proto, bytes(buf[ip + 12:ip + 16]), sport, bytes(buf[ip + 16:ip + 20]), dport), -1)
        if link < 0:
            return punt(P_NO_FLOW)
        e = self._e[link >> 1]
        d = link & 1
        if not e.fast:
            return punt(P_NOT_FAST)
        if e.expires <= now:
            return punt(P_EXPIRED)
        new_state, output_seen = -1, False
        if proto == 6:
            if self._tcp_next is None:
                if tflags & 0x07 or not tflags & 0x10:
                    return punt(P_TCP_FLAGS)
            else:
                # A client's SYN, a server's SYN without ACK, or neither ACK nor RST: the slow path's (the
                # server's SYN-ACK is a plain state move, as in fastpath.c)
                if (tflags & 0x02 and not (d == OUT and tflags & 0x10)) or not tflags & 0x14:
                    return punt(P_TCP_FLAGS)
                cls = 3 if tflags & 0x04 else 0 if tflags & 0x02 else 1 if tflags & 0x01 else 2  # tcp_state_idx
                tbl = e.in_table if d == IN else 1
                output_seen = d == OUT and e.in_table == 2
                new_state = self._tcp_next[(tbl * 4 + cls) * TCP_NSTATES + (e.state if e.state < TCP_NSTATES else 0)]
                if (new_state != e.state or output_seen) and len(self._events) >= EVENTS_MAX:
                    return punt(P_TCP_FLAGS)
        routed = e.mode != DR
        egress = e.out_if if d == IN else e.in_if
        out = self._ifaces.get(egress)
        if out is None:
            return punt(P_IFACE)
        if routed and buf[ip + 8] <= 1:
            return punt(P_TTL)
        encap = d == IN and e.mode == TUN
        if gso_type and (not out[3] or encap):
            return punt(P_GSO)  # no virtio-net header on that port, or no GSO type for IP-in-IP
        wire = min(total, 20 + (doff if proto == 6 else 8) + gso_size) if gso_type else total
        if wire + (20 if encap else 0) > min(out[2], 65535):
            return punt(P_MTU)
        if d == IN and e.mode == FULLNAT and proto == 6 and e.toa_kind and _has_option(
                buf, l4 + 20, l4 + doff, e.toa_kind):
            return punt(P_TOA)
        if encap and off < 20:
            return punt(P_HEADROOM)
        # FULLNAT with TOA, the plain cases (fastpath.c): the TOA into the handshake's last ACK, the server's
        # SYN-ACK MSS lowered by its length.
        toa_ins, mss_at = False, -1
        if proto == 6 and e.mode == FULLNAT and e.toa_kind:
            if (d == IN and e.toa_due and self._tcp_next is not None and not tflags & 0x04 and tflags & 0x10
                    and e.state == TCP_SR):
                if (gso_type or off < TOA_LEN or doff + TOA_LEN > 60 or total + TOA_LEN > out[2]
                        or not _options_clean(buf, l4 + 20, l4 + doff, e.toa_kind)):
                    return punt(P_TOA)
                toa_ins = True
            elif d == OUT and tflags & 0x02:
                if gso_type:
                    return punt(P_TOA)
                mss_at = _find_mss(buf, l4 + 20, l4 + doff)
                if mss_at >= 0 and _u16.unpack_from(buf, mss_at + 2)[0] <= TOA_LEN:
                    mss_at = -1  # clamp_mss leaves an MSS this small alone
            if (toa_ins or mss_at >= 0) and len(self._events) >= EVENTS_MAX:
                return punt(P_TOA)

        # Decided: forward.  A partial checksum stays so where the egress takes it; elsewhere it is finished.
        if flags & CSUM_PARTIAL and (not out[3] or encap or toa_ins or mss_at >= 0):
            complete_checksum(memoryview(buf)[off:off + 14 + total])
            flags &= ~CSUM_PARTIAL
        if flags & CSUM_PARTIAL:
            udp = _PARTIAL
        if new_state >= 0:
            if new_state != e.state or output_seen or toa_ins or mss_at >= 0:
                self._events.append(link >> 1 << 8 | (EV_OUTPUT_SEEN if output_seen else 0)
                                    | (EV_TOA if toa_ins else 0) | (EV_MSS if mss_at >= 0 else 0) | new_state)
            e.state = new_state
            if output_seen:
                e.in_table = 0
            e.expires = now + self._tcp_to[new_state]
        else:
            e.expires = now + (self._tcp_timeout if proto == 6 else self._udp_timeout)
        c = self._dests.setdefault(e.dest_id if e.dest_id < self._ndests else 0, [0, 0, 0, 0])
        if d == IN:
            c[0] += 1
            c[2] += total
        else:
            c[1] += 1
            c[3] += total
        if routed:
            w = _u16.unpack_from(buf, ip + 8)[0]
            buf[ip + 8] -= 1
            _u16.pack_into(buf, ip + 10, csum_replace2(_u16.unpack_from(buf, ip + 10)[0], w, w - 0x100))
        if d == IN:
            if e.mode == FULLNAT:
                _set_addr(buf, ip, csum, udp, 12, e.laddr)
                _set_port(buf, l4, csum, udp, e.lport)
            if e.mode in (NAT, FULLNAT):
                _set_addr(buf, ip, csum, udp, 16, e.daddr)
                _set_port(buf, l4 + 2, csum, udp, e.dport)
        else:
            _set_addr(buf, ip, csum, udp, 12, e.vaddr)
            _set_port(buf, l4, csum, udp, e.vport)
            if e.mode == FULLNAT:
                _set_addr(buf, ip, csum, udp, 16, e.caddr)
                _set_port(buf, l4 + 2, csum, udp, e.cport)
        if mss_at >= 0:  # clamp_mss: patched on a 16-bit boundary of the segment, summed again elsewhere
            old = _u16.unpack_from(buf, mss_at + 2)[0]
            _u16.pack_into(buf, mss_at + 2, old - TOA_LEN)
            if (mss_at + 2 - l4) & 1:
                _tcp_checksum(buf, ip, l4, total - 20)
            else:
                _u16.pack_into(buf, csum, csum_replace2(_u16.unpack_from(buf, csum)[0], old, old - TOA_LEN))
        if toa_ins:  # insert_toa: headers 8 bytes to the left, the option first among the options
            nf = off - TOA_LEN
            buf[nf:nf + 54] = bytes(buf[off:off + 54])
            off, ip, l4 = nf, nf + 14, nf + 34
            buf[l4 + 20:l4 + 28] = bytes((e.toa_kind, TOA_LEN)) + _u16.pack(e.cport) + e.caddr
            buf[l4 + 12] = (doff + TOA_LEN) // 4 << 4 | (buf[l4 + 12] & 0x0F)
            ot = _u16.unpack_from(buf, ip + 2)[0]
            _u16.pack_into(buf, ip + 2, ot + TOA_LEN)
            _u16.pack_into(buf, ip + 10, csum_replace2(_u16.unpack_from(buf, ip + 10)[0], ot, ot + TOA_LEN))
            total += TOA_LEN
            _tcp_checksum(buf, ip, l4, total - 20)
            e.toa_due = False
        ln = 14 + total
        if encap:
            nf = off - 20
            buf[nf:nf + 14] = bytes(buf[off:off + 14])
            o = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, buf[ip + 1], total + 20,
                                      _u16.unpack_from(buf, ip + 4)[0], _u16.unpack_from(buf, ip + 6)[0] & 0x4000,
                                      buf[ip + 8], 4, 0, out[1], e.daddr))
            _u16.pack_into(o, 10, checksum(o))
            buf[nf + 14:nf + 34] = o
            off = nf
            ln += 20
        buf[off:off + 6] = e.rs_mac if d == IN else e.client_mac
        buf[off + 6:off + 12] = out[0]
        return -1, off, ln, egress, flags


def _address(mv: memoryview) -> int:
    mv = mv.cast("B")
    return ctypes.addressof(ctypes.c_char.from_buffer(mv)) if len(mv) else 0


def _overlap(bv: memoryview, dv: memoryview, dlen: int) -> bool:
    """Do the first ``dlen`` bytes of ``dv`` lie within ``bv``'s memory (as C checks)?"""
    b, d = _address(bv), _address(dv)
    return d < b + len(bv.cast("B")) and b < d + dlen


def _patch_l4(buf, csum: int, udp, old: bytes, new: bytes) -> None:
    c = _u16.unpack_from(buf, csum)[0]
    if udp == _PARTIAL:  # holds the pseudo-header sum itself: it moves the other way (inet_proto_csum_replace4)
        _u16.pack_into(buf, csum, ~csum_replace_bytes(~c & 0xFFFF, old, new) & 0xFFFF)
        return
    if udp and c == 0:
        return
    c = csum_replace_bytes(c, old, new)
    if udp and c == 0:
        c = 0xFFFF
    _u16.pack_into(buf, csum, c)


def _set_addr(buf, ip: int, csum: int, udp: bool, field: int, new: bytes) -> None:
    a = ip + field
    old = bytes(buf[a:a + 4])
    if old == new:
        return
    buf[a:a + 4] = new
    _u16.pack_into(buf, ip + 10, csum_replace_bytes(_u16.unpack_from(buf, ip + 10)[0], old, new))
    _patch_l4(buf, csum, udp, old, new)


def _set_port(buf, at: int, csum: int, udp: bool, value: int) -> None:
    old = bytes(buf[at:at + 2])
    new = _u16.pack(value)
    if old == new:
        return
    buf[at:at + 2] = new
    if udp != _PARTIAL:  # not in the pseudo header: a partial checksum is finished over the new port anyway
        _patch_l4(buf, csum, udp, old, new)


def _options(buf, i: int, end: int) -> tuple[list[tuple[int, int, int]], int]:
    """The TCP options as ``(offset, kind, length)``, walked as a receiving TCP walks them (RFC 9293 §3.1: EOL
    or a malformed option ends the walk), and where the walk stopped (``end`` only at a clean end).
    fastpath.c next_option."""
    out = []
    while i < end and buf[i] != 0:
        if buf[i] == 1:
            out.append((i, 1, 1))
            i += 1
            continue
        if i + 1 >= end or buf[i + 1] < 2 or i + buf[i + 1] > end:
            break
        out.append((i, buf[i], buf[i + 1]))
        i += buf[i + 1]
    return out, i


def _options_clean(buf, i: int, end: int, kind: int) -> bool:
    """Are the TCP options well formed to their end (no EOL), with no TOA-looking one (fastpath.c)?"""
    opts, stop = _options(buf, i, end)
    return stop == end and not any(k == kind and ln in (8, 20) for _, k, ln in opts)


def _find_mss(buf, i: int, end: int) -> int:
    """The offset of the MSS option (kind 2, length 4) as clamp_mss finds it, or -1."""
    return next((o for o, k, ln in _options(buf, i, end)[0] if k == 2 and ln == 4), -1)


def _tcp_checksum(buf, ip: int, l4: int, seg: int) -> None:
    buf[l4 + 16:l4 + 18] = b"\0\0"
    s = csum_partial(bytes(buf[ip + 12:ip + 20])) + 6 + seg
    _u16.pack_into(buf, l4 + 16, csum_fold(csum_partial(bytes(buf[l4:l4 + seg]), s)))


def _has_option(buf, i: int, end: int, kind: int) -> bool:
    """Is ``kind`` among the TCP options, read up to EOL or the first malformed one (RFC 9293 §3.1)?"""
    return any(k == kind for _, k, _ in _options(buf, i, end)[0])