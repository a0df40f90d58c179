"""FULLNAT's TCP Option Address (TOA) and the MSS adjustment that goes with it.

The real server in FULLNAT sees only the director's local address (LIP), so the
director hands it the client's address and port as a TCP option (Alibaba's TOA,
also DPVS): kind 254 (configurable; Alibaba used 253 for IPv6), length 8 for
IPv4 / 20 for IPv6, then the client port and address in network order.  The
RS-side TOA module reads it from the ACK that completes the handshake.

A client may put a TOA-kind option in its own segments to claim any address
(a bug DPVS had to fix), so every such option is removed before ours goes in.
"""

from __future__ import annotations

import struct

from pylvs import native
from pylvs.core.packet import IPPROTO_TCP, Packet, iter_tcp_options
from pylvs.core.rewrite import set_ip_total_length

_u16 = struct.Struct("!H")

TCPOPT_NOP = 1
TCPOPT_MSS = 2
MAX_TCP_HEADER = 60


def toa_option(kind: int, caddr: bytes, cport: int) -> bytes:
    """The TOA option bytes: kind, length, port, address (8 or 20 bytes)."""
    return bytes((kind, 4 + len(caddr))) + _u16.pack(cport) + caddr


def fix_tcp_checksum(buf: bytearray, l3: int, l4: int, end: int) -> None:
    """Recompute the TCP checksum from scratch (used after option surgery)."""
    buf[l4 + 16:l4 + 18] = b"\x00\x00"
    src = bytes(buf[l3 + 12:l3 + 16])
    dst = bytes(buf[l3 + 16:l3 + 20])
    s = native.pseudo_header_sum(src, dst, IPPROTO_TCP, end - l4)
    _u16.pack_into(buf, l4 + 16, native.checksum(memoryview(buf)[l4:end], s))


#: Lengths an RS-side TOA module accepts (IPv4, IPv6).  Other options of the
#: same kind (RFC 6994 experiments share kinds 253/254) are left alone.
TOA_LENGTHS = (8, 20)


def _is_toa(kind: int, length: int, toa_kind: int) -> bool:
    return kind == toa_kind and length in TOA_LENGTHS


def strip_toa(p: Packet, kind: int) -> int:
    """Replace every TOA-looking option in the segment with NOPs; returns how many.

    Parsing stops where a receiving TCP's would (EOL or a malformed length),
    so nothing the RS's TOA module could read survives.
    """
    buf = p.buf
    start, end = p.l4 + 20, p.l4 + p.doff
    if buf.find(kind, start, end) < 0:
        return 0  # no byte of that value among the options, so no option of that kind: skip the walk
    hits = [(o, ln) for o, k, ln in iter_tcp_options(buf, start, end) if _is_toa(k, ln, kind)]
    if not hits:
        return 0
    for o, ln in hits:
        buf[o:o + ln] = bytes((TCPOPT_NOP,)) * ln
    fix_tcp_checksum(buf, p.l3, p.l4, p.l3 + p.ip_len)
    return len(hits)


def insert_toa(p: Packet, option: bytes, mtu: int) -> tuple[str, int]:
    """Put ``option`` first among the TCP options, growing the packet in place.

    Any TOA-looking option of the same kind the client sent is removed while
    the options are rebuilt (its room is reused).  Returns the outcome and how
    many such options were removed.  The outcome is "inserted", or why it was
    skipped, leaving the packet untouched: "no_room" (the 40 bytes of option
    space cannot take it) or "mtu" (the grown packet would not fit the egress
    MTU).  Other options keep their order; NOPs pad to 32 bits.
    """
    buf = p.buf
    l3, l4, doff = p.l3, p.l4, p.doff
    kind = option[0]
    kept = []
    removed = 0
    # Walk the options as a receiver would; trailing EOL/padding and anything
    # after a malformed option are dropped (re-padded below).
    for o, k, ln in iter_tcp_options(buf, l4 + 20, l4 + doff):
        if _is_toa(k, ln, kind):
            removed += 1
        else:
            kept.append(bytes(buf[o:o + ln]))
    body = option + b"".join(kept)
    new_len = (len(body) + 3) & ~3
    if 20 + new_len > MAX_TCP_HEADER:
        return "no_room", 0
    grow = 20 + new_len - doff
    if p.ip_len + grow > mtu:
        return "mtu", 0
    opts = body + bytes((TCPOPT_NOP,)) * (new_len - len(body))
    buf[l4 + 20:l4 + doff] = opts
    p.doff = doff = 20 + new_len
    buf[l4 + 12] = (doff // 4) << 4 | (buf[l4 + 12] & 0x0F)
    p.ip_len += grow
    set_ip_total_length(buf, l3, p.ip_len)
    fix_tcp_checksum(buf, l3, l4, l3 + p.ip_len)
    return "inserted", removed


def clamp_mss(p: Packet, delta: int) -> bool:
    """Lower the MSS option by ``delta`` (the TOA length), patching the checksum."""
    buf = p.buf
    for o, k, ln in iter_tcp_options(buf, p.l4 + 20, p.l4 + p.doff):
        if k == TCPOPT_MSS and ln == 4:
            old = _u16.unpack_from(buf, o + 2)[0]
            if old <= delta:
                return False
            new = old - delta
            _u16.pack_into(buf, o + 2, new)
            # The option may sit at an odd offset from the segment start, where
            # the 16-bit word boundaries fall mid-field: recompute in that case.
            if (o + 2 - p.l4) & 1:
                fix_tcp_checksum(buf, p.l3, p.l4, p.l3 + p.ip_len)
            else:
                c = _u16.unpack_from(buf, p.l4 + 16)[0]
                _u16.pack_into(buf, p.l4 + 16, native.csum_replace2(c, old, new))
            return True
    return False


__all__ = ["toa_option", "strip_toa", "insert_toa", "clamp_mss", "fix_tcp_checksum"]
