"""Shared by tests/property/test_native_diff.py and test_fastpath_diff.py (the C extension ``pylvs._native``
against its pure-Python twins): settings, an independent checksum, the FlowTable constants and strategies, the
``Twin`` that calls a C and a pure table in lockstep, the frame builders, and the oracle.

The oracle is a third, independent model that runs alongside: a per-frame oracle written here that decides
forward or punt (and why) in the order fastpath.c documents, and for a forward builds the expected output with
the slow path's own rewrite code (pylvs/core/modes.py ``xlate_in``/``xlate_out``, pylvs/core/rewrite.py
``dec_ttl``, pylvs/core/icmp.py ``ipv4_header`` for the IP-in-IP header): the reference the fast path must
equal.  Its simulated buffer, descriptors, counters and expiry times must equal both implementations'.  On
every forwarded frame the IP and L4 checksums are verified and the TTL checked (one less, except DR).

Not a test module (no ``test_`` prefix): it imports ``pylvs._native``, so the test modules import it only after
their module-level skip when the extension is missing.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from pylvs import _native as C
from pylvs._pure import flowtable as PF
from pylvs.core.icmp import ipv4_header
from pylvs.core.modes import RULES, xlate_in, xlate_out
from pylvs.core.rewrite import dec_ttl, set_macs
from pylvs.testing import frames, ip4, mac


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TABLE_SETTINGS = settings(max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.filter_too_much])

_u16 = struct.Struct("!H")


# ====================================================================== an independent checksum


def ref_sum(data) -> int:
    """RFC 1071 one's-complement sum folded to 16 bits (0..0xFFFF), word by word; data verifies iff 0xFFFF."""
    data = bytes(data)
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_csum(data) -> int:
    return ~ref_sum(data) & 0xFFFF


def ref_complete(f: bytearray) -> bool:
    """CHECKSUM_PARTIAL completion, as documented (native/csum.c pn_complete_l4_checksum): an unfragmented
    IPv4 TCP/UDP frame gets its L4 checksum computed in full over the pseudo header and the segment."""
    if len(f) < 34 or f[12:14] != b"\x08\x00" or f[14] >> 4 != 4:
        return False
    ihl, total, proto = (f[14] & 0x0F) * 4, _u16.unpack_from(f, 16)[0], f[23]
    l4, end = 14 + ihl, 14 + total
    if ihl < 20 or total < ihl or end > len(f) or _u16.unpack_from(f, 20)[0] & 0x3FFF:
        return False
    if proto == 6 and end - l4 >= 20:
        at = l4 + 16
    elif proto == 17 and end - l4 >= 8:
        at = l4 + 6
    else:
        return False
    f[at:at + 2] = b"\x00\x00"
    c = ref_csum(bytes(f[26:34]) + struct.pack("!BBH", 0, proto, end - l4) + bytes(f[l4:end]))
    _u16.pack_into(f, at, c if c or proto != 17 else 0xFFFF)
    return True

# ====================================================================== FlowTable: helpers

NAT, DR, TUN, FULLNAT = range(4)
MODE_NAMES = ("nat", "dr", "tun", "fullnat")
IN, OUT = 0, 1
REASONS = PF.PUNT_NAMES
R = {name: i for i, name in enumerate(REASONS)}
FORWARD = -1
DESC = struct.Struct("=IIhHHBB")  # off, len, verdict, reason, gso_size, gso_type, flags
CSUM_PARTIAL, CSUM_VALID = 1, 2
assert (C.CSUM_PARTIAL, C.CSUM_VALID) == (PF.CSUM_PARTIAL, PF.CSUM_VALID) == (CSUM_PARTIAL, CSUM_VALID)
assert DESC.size == C.DESC_SIZE == PF.DESC_SIZE

ADDRS = [ip4(a) for a in ("198.18.0.10", "198.18.0.11", "198.18.0.100", "198.19.0.11", "198.19.0.250")]
PORTS = [80, 53, 8080, 40000, 40001]
MACS = [mac(m) for m in ("02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:02:11",
                         "02:00:00:00:02:12", "ff:ff:ff:ff:ff:ff")]
IFACE_IDS = [0, 1, 2, 3, 31]
TOA_KINDS = [0, 254, 253, 8, 2]
ANY_FRAME = frames("any")

addrs_st = st.sampled_from(ADDRS) | st.binary(min_size=4, max_size=4)
ports_st = st.sampled_from(PORTS) | st.integers(0, 65535)
macs_st = st.sampled_from(MACS) | st.binary(min_size=6, max_size=6)
mtus_st = st.sampled_from([1, 20, 40, 60, 61, 80, 100, 120, 576, 1500, 65535]) | st.integers(1, 300)


def chance(d: st.DataObject, tenths: int) -> bool:
    """True with probability about tenths/10 (before shrinking)."""
    return d.draw(st.integers(0, 9)) < tenths


class Twin:
    """A C table and a pure table, called in lockstep; results and exception types must agree."""

    def __init__(self, capacity: int, key: bytes, dests: int) -> None:
        self.c = C.FlowTable(capacity, key, dests)
        self.p = PF.FlowTable(capacity, key, dests)
        self.capacity = capacity
        self.dests = dests

    def call(self, name: str, *args):
        out = []
        for t in (self.c, self.p):
            try:
                out.append(("ok", getattr(t, name)(*args)))
            except Exception as e:  # noqa: BLE001 - the exception type is part of the contract
                out.append(("raise", type(e)))
        if currently_in_test_context():
            note(f"{name}{args!r} -> {out[0]!r}")
        assert out[0] == out[1], f"{name}{args!r}: C {out[0]!r} != pure {out[1]!r}"
        return out[0][1] if out[0][0] == "ok" else None

    def slots(self) -> dict[int, dict]:
        """Every slot's get() (both sides equal), for the used ones."""
        got = {}
        for s in range(self.capacity + 2):
            g = self.call("get", s)
            if g is not None:
                got[s] = g
        return got

    def compare_all(self) -> dict[int, dict]:
        assert len(self.c) == len(self.p)
        assert self.c.stats() == self.p.stats()
        for i in range(self.dests):
            assert self.c.dest_counters(i) == self.p.dest_counters(i)
        entries = self.slots()
        assert len(entries) == len(self.c)
        for s, e in entries.items():
            assert self.c.lookup(e["proto"], e["caddr"], e["cport"], e["vaddr"], e["vport"]) >> 1 == s
            if e["has_out"]:
                assert self.c.lookup(e["proto"], e["daddr"], e["dport"], e["laddr"], e["lport"]) >> 1 == s
        return entries


def tcp_options(d: st.DataObject, toa_kind: int) -> bytes:
    pieces = d.draw(st.lists(st.sampled_from([
        b"\x01", b"\x02\x04\x05\xb4", b"\x03\x03\x07", b"\x04\x02", b"\x08\x0a" + bytes(8), b"\x00",
        "toa", "toa", "toa", "other_toa", b"\xfe\x01", b"\x02\x00", b"\x02\x2a"]), max_size=5))
    out = b""
    for p in pieces:
        if p == "toa":
            p = bytes([toa_kind or 254, 8]) + d.draw(st.binary(min_size=6, max_size=6))
        elif p == "other_toa":
            p = bytes([d.draw(st.sampled_from(TOA_KINDS[1:])), 8]) + bytes(6)
        out += p
    out = (out + b"\x00" * (-len(out) % 4))[:40]
    return out


def build_frame(dmac: bytes, smac: bytes, proto: int, src: bytes, sport: int, dst: bytes, dport: int, *,
                ttl: int = 64, flags: int = 0x10, payload: bytes = b"", tcp_opts: bytes = b"",
                ip_opts: bytes = b"", tos: int = 0, ident: int = 1, frag: int = 0x4000, udp_csum0: bool = False,
                etype: bytes = b"\x08\x00", seq: int = 1, ack: int = 1, partial: bool = False) -> bytearray:
    """Ethernet/IPv4/TCP-or-UDP with correct checksums (computed here, independently of pylvs).  ``partial``:
    the L4 checksum field holds only the pseudo-header sum, as the local stack leaves it with checksum offload
    (CHECKSUM_PARTIAL)."""
    assert len(tcp_opts) % 4 == 0 and len(tcp_opts) <= 40 and len(ip_opts) % 4 == 0 and len(ip_opts) <= 40
    if proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(tcp_opts) // 4) << 4, flags,
                                   1024, 0, 0)) + tcp_opts + payload
        coff = 16
    elif proto == 17:
        l4 = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)) + payload
        coff = 6
    else:
        l4, coff = bytearray(struct.pack("!HH", sport, dport) + payload), None
    ihl = 5 + len(ip_opts) // 4
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + len(l4), ident, frag, ttl, proto, 0,
                               src, dst)) + ip_opts
    _u16.pack_into(ip, 10, ref_csum(ip))
    if coff is not None:
        c = ref_csum(src + dst + struct.pack("!BBH", 0, proto, len(l4)) + l4)
        if proto == 17:
            c = 0 if udp_csum0 else (c or 0xFFFF)
        if partial:
            c = ref_sum(src + dst + struct.pack("!BBH", 0, proto, len(l4)))
        _u16.pack_into(l4, coff, c)
    return bytearray(dmac + smac + etype) + ip + l4


def draw_frame(d: st.DataObject, dmac: bytes, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
               toa_kind: int) -> tuple[bytearray, int]:
    """A frame for this tuple with everything else the fast path looks at drawn at random, and its descriptor
    flags (CSUM_PARTIAL when the checksum was left partial; CSUM_VALID at times, said of any frame)."""
    kw = {
        "ttl": 64 if chance(d, 6) else d.draw(st.sampled_from([0, 1, 2, 3, 255]), label="ttl"),
        "tos": d.draw(st.integers(0, 255)),
        "ident": d.draw(st.integers(0, 0xFFFF)),
        "frag": d.draw(st.sampled_from([0x4000, 0x0000]), label="frag") if chance(d, 9) else
        d.draw(st.sampled_from([0x2000, 0x0001, 0x6000, 0x4010, 0x8000, 0xC000, 0x1FFF]), label="frag"),
        "payload": d.draw(st.binary(max_size=100), label="payload"),
        "udp_csum0": chance(d, 3),
        "ip_opts": b"" if chance(d, 9) else d.draw(st.sampled_from([b"\x01\x01\x01\x00", b"\x94\x04\x00\x00",
                                                                     b"\x01" * 8])),
        "seq": d.draw(st.integers(0, 0xFFFFFFFF)),
        "partial": chance(d, 2),
    }
    if proto == 6:
        kw["flags"] = d.draw(st.sampled_from([0x10, 0x18]), label="flags") if chance(d, 6) else d.draw(
            st.sampled_from([0x50, 0x90, 0x11, 0x02, 0x12, 0x04, 0x14, 0x00, 0x08, 0x38]) | st.integers(0, 255),
            label="flags")
        kw["tcp_opts"] = b"" if chance(d, 5) else tcp_options(d, toa_kind)
    smac = d.draw(macs_st)
    f = build_frame(dmac, smac, proto, src, sport, dst, dport, **kw)
    if chance(d, 1):
        f += d.draw(st.binary(min_size=1, max_size=12), label="ethernet padding")
    if chance(d, 1):  # a checksum or a length broken on purpose
        at = d.draw(st.sampled_from([14 + 10, 14 + 2, 14 + 20 + (16 if proto == 6 else 6), 14 + 20 + 4, 12, 14]))
        if at < len(f):
            f[at] ^= d.draw(st.integers(1, 255))
    if kw["partial"]:
        flags = CSUM_PARTIAL if chance(d, 9) else 0  # without the flag: a bad checksum
    else:
        flags = d.draw(st.sampled_from([0, 0, 0, CSUM_VALID, CSUM_PARTIAL, 0xF0, 0xFC, 0xFF]), label="desc flags")
    return f, flags


def has_option(opts: bytes, kind: int) -> bool:
    """Is ``kind`` among the TCP options up to EOL or the first malformed one (RFC 9293 §3.1)?"""
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            return False
        if k == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            return False
        if k == kind:
            return True
        i += opts[i + 1]
    return False


class Oracle:
    """The fast path's contract, written out: a verdict per frame and, for a forward, the bytes the slow path's
    rewrite (pylvs.core.modes / rewrite / icmp) would produce.  Runs on a copy of the buffer in batch order."""

    def __init__(self, twin: Twin, ifaces: dict, timeouts: tuple[float, float], entries: dict[int, dict]):
        self.twin = twin
        self.ifaces = dict(ifaces)
        self.tcp_timeout, self.udp_timeout = timeouts
        self.entries = {s: dict(e) for s, e in entries.items()}
        self.counters = {i: list(twin.c.dest_counters(i)) for i in range(twin.dests)}
        self.stats = twin.c.stats()
        # forwarded frames: (desc index, off, len, TTL in, mode, direction, UDP checksum in or -1 for TCP,
        # whether the input's L4 checksum was right: one the descriptor said was checked stays as it was)
        self.checks: list[tuple[int, int, int, int, int, int, int]] = []

    def process(self, buf: bytearray, desc: bytearray, n: int, ifindex: int, now: float) -> int:
        punts = 0
        for i in range(n):
            off, ln, _, _, gso_size, gso_type, flags = DESC.unpack_from(desc, i * DESC.size)
            if ifindex in self.ifaces:
                r = self.one(buf, off, ln, flags, ifindex, now, i)
            else:
                r = R["interface"]  # left as it is: the slow path finishes a partial checksum itself
            if isinstance(r, tuple):
                off, ln, egress = r
                # forwarded to a port without offload: a partial checksum was finished
                DESC.pack_into(desc, i * DESC.size, off, ln, egress, 0, gso_size, gso_type, flags & ~CSUM_PARTIAL)
                self.stats["forwarded"] += 1
            else:
                DESC.pack_into(desc, i * DESC.size, off, ln, -1, r, gso_size, gso_type, flags)
                self.stats["punt_" + REASONS[r]] += 1
                punts += 1
        return punts

    @staticmethod
    def complete(buf: bytearray, off: int, ln: int) -> None:
        f = bytearray(buf[off:off + ln])
        if ref_complete(f):
            buf[off:off + ln] = f

    def one(self, buf: bytearray, off: int, ln: int, flags_in: int, ifindex: int, now: float, index: int):
        if off > len(buf) or ln > len(buf) - off:
            return R["malformed"]
        # The L4 checksum is not verified where the kernel says it did, or where it is still partial; a
        # partial one is finished once the frame is forwarded (these interfaces take no virtio-net header).
        trusted = bool(flags_in & (CSUM_PARTIAL | CSUM_VALID))
        f = bytes(buf[off:off + ln])
        if ln < 14 or f[:6] != self.ifaces[ifindex][0] or f[12:14] != b"\x08\x00":
            return R["not_ipv4"]
        ip = f[14:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[0] & 0x0F < 5:
            return R["malformed"]
        if ip[0] & 0x0F != 5:
            return R["ip_options"]
        total = _u16.unpack_from(ip, 2)[0]
        if total < 20 or total > len(ip) or ref_sum(ip[:20]) != 0xFFFF:
            return R["malformed"]
        if _u16.unpack_from(ip, 6)[0] & 0x3FFF:  # MF or an offset; DF and the reserved bit are fine
            return R["fragment"]
        proto, l4 = ip[9], ip[20:total]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        l4_ok = bool(flags_in & CSUM_PARTIAL) or ref_sum(pseudo + l4) == 0xFFFF or (
            proto == 17 and len(l4) >= 8 and l4[6:8] == b"\0\0")
        doff = flags = 0
        if proto == 6:
            if len(l4) < 20:
                return R["malformed"]
            doff = (l4[12] >> 4) * 4
            if doff < 20 or doff > len(l4) or (not trusted and ref_sum(pseudo + l4) != 0xFFFF):
                return R["malformed"]
            flags = l4[13]
        elif proto == 17:
            if len(l4) < 8 or _u16.unpack_from(l4, 4)[0] != len(l4):
                return R["malformed"]
            if not trusted and _u16.unpack_from(l4, 6)[0] != 0 and ref_sum(pseudo + l4) != 0xFFFF:
                return R["malformed"]
        else:
            return R["protocol"]
        sport, dport = struct.unpack_from("!HH", l4)
        link = self.twin.p.lookup(proto, ip[12:16], sport, ip[16:20], dport)
        assert link == self.twin.c.lookup(proto, ip[12:16], sport, ip[16:20], dport)
        if link < 0:
            return R["no_flow"]
        e, direction = self.entries[link >> 1], link & 1
        if not e["fast"]:
            return R["not_fast"]
        if e["expires"] <= now:
            return R["expired"]
        if proto == 6 and (flags & 0x07 or not flags & 0x10):  # a state change: for the slow path
            return R["tcp_flags"]
        rule = RULES[MODE_NAMES[e["mode"]]]
        egress = e["out_if"] if direction == IN else e["in_if"]
        if egress not in self.ifaces:
            return R["interface"]
        emac, eaddr, emtu = self.ifaces[egress]
        ttl = ip[8]
        if rule.routed and ttl <= 1:
            return R["ttl"]
        encap = direction == IN and rule.encap
        if total + (20 if encap else 0) > min(emtu, 65535):  # TUN: the outer length must fit 16 bits too
            return R["mtu"]
        if direction == IN and rule.snat and proto == 6 and e["toa_kind"] and has_option(l4[20:doff],
                                                                                         e["toa_kind"]):
            return R["toa"]
        if encap and off < 20:
            return R["headroom"]

        # Forward, exactly as pipeline.Director._forward_in/_forward_out + _emit would rewrite it (a partial
        # checksum finished first, as the slow path gets it).
        if flags_in & CSUM_PARTIAL:
            self.complete(buf, off, ln)
            f = bytes(buf[off:off + ln])
            l4 = f[14 + 20:14 + total]
        e["expires"] = now + (self.tcp_timeout if proto == 6 else self.udp_timeout)
        c = self.counters[e["dest_id"]]
        if direction == IN:
            c[0] += 1
            c[2] += total
        else:
            c[1] += 1
            c[3] += total
        out = bytearray(f[:14 + total])  # Ethernet padding is not forwarded
        if rule.routed:
            dec_ttl(out, 14)
        conn = SimpleNamespace(**{k: e[k] for k in ("caddr", "cport", "vaddr", "vport", "laddr", "lport",
                                                    "daddr", "dport")})
        (xlate_in if direction == IN else xlate_out)(conn, rule, out, 14, 34, proto)
        if encap:
            outer = ipv4_header(eaddr, e["daddr"], 4, total, ttl=out[22], tos=out[15],
                                ident=_u16.unpack_from(out, 18)[0], frag=_u16.unpack_from(out, 20)[0] & 0x4000)
            out[14:14] = outer
            off -= 20
        set_macs(out, e["rs_mac"] if direction == IN else e["client_mac"], emac)
        buf[off:off + len(out)] = out
        check = (index, off, len(out), ttl, e["mode"], direction, _u16.unpack_from(l4, 6)[0] if proto == 17 else -1,
                 l4_ok)
        verify_forwarded(out, 0, len(out), *check[3:])
        self.checks.append(check)
        return off, len(out), egress


def verify_forwarded(buf: bytes, off: int, ln: int, ttl_in: int, mode: int, direction: int, udp_csum_in: int,
                     l4_ok: bool = True):
    """The output of a forward: IP header and L4 checksums verify (checked with the C functions and with the
    reference sum here), TTL one less except DR; TUN inbound: a valid outer header around it."""
    f = bytes(buf[off:off + ln])
    ip = f[14:]
    if direction == IN and mode == TUN:
        assert ip[0] == 0x45 and ip[9] == 4
        assert C.checksum(ip[:20]) == 0 and ref_sum(ip[:20]) == 0xFFFF
        assert _u16.unpack_from(ip, 2)[0] == len(ip)
        assert ip[8] == ip[20 + 8]  # outer TTL copied from the (decremented) inner one
        ip = ip[20:]
    total = _u16.unpack_from(ip, 2)[0]
    assert total == len(ip)
    assert C.checksum(ip[:20]) == 0 and ref_sum(ip[:20]) == 0xFFFF
    assert ip[8] == (ttl_in if mode == DR else ttl_in - 1)
    proto, l4 = ip[9], ip[20:total]
    pseudo = C.pseudo_header_sum(ip[12:16], ip[16:20], proto, len(l4))
    if not l4_ok:
        return  # said to be checked by the kernel, but broken here on purpose: not summed, so not repaired
    if proto == 6:
        assert C.csum_fold(C.csum_partial(l4, pseudo)) == 0
    else:
        csum = _u16.unpack_from(l4, 6)[0]
        assert (csum == 0) == (udp_csum_in == 0)  # RFC 768: "no checksum" stays so; a computed 0 goes as 0xFFFF
        if csum:
            assert C.csum_fold(C.csum_partial(l4, pseudo)) == 0
