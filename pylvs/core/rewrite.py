"""In-place header edits with incremental checksum updates (RFC 1624).

Every function edits a ``bytearray`` at given offsets and patches the IPv4
header checksum and, where the edited field is covered by it, the TCP/UDP
checksum (addresses are in the pseudo-header, RFC 793 §3.1).  The same
functions rewrite the datagram quoted inside an ICMP error, where the L4
checksum may lie beyond the quoted bytes (``end`` bounds what exists).
"""

from __future__ import annotations

import struct

from pylvs import native
from pylvs.core.packet import IPPROTO_TCP, IPPROTO_UDP

_u16 = struct.Struct("!H")

SRC = 12  # offset of the source address in the IPv4 header
DST = 16  # offset of the destination address


def _l4_csum_off(proto: int, l4: int, end: int) -> int:
    """Offset of the L4 checksum field, or -1 if absent/not quoted/UDP zero."""
    if proto == IPPROTO_TCP:
        off = l4 + 16
    elif proto == IPPROTO_UDP:
        off = l4 + 6
    else:
        return -1
    return off if off + 2 <= end else -1


def _patch_l4(buf: bytearray, proto: int, off: int, old: bytes, new: bytes) -> None:
    if off < 0:
        return
    check = _u16.unpack_from(buf, off)[0]
    if proto == IPPROTO_UDP and check == 0:
        return  # RFC 768: zero means "no checksum"; keep it that way
    check = native.csum_replace_bytes(check, old, new)
    if proto == IPPROTO_UDP and check == 0:
        check = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    _u16.pack_into(buf, off, check)


def set_addr(buf: bytearray, l3: int, l4: int, proto: int, field: int, new: bytes, end: int | None = None) -> None:
    """Replace the IPv4 source (``field=SRC``) or destination (``DST``) address."""
    if end is None:
        end = len(buf)
    a = l3 + field
    old = bytes(buf[a:a + 4])
    if old == new:
        return
    buf[a:a + 4] = new
    _u16.pack_into(buf, l3 + 10, native.csum_replace_bytes(_u16.unpack_from(buf, l3 + 10)[0], old, new))
    _patch_l4(buf, proto, _l4_csum_off(proto, l4, end), old, new)


def set_port(buf: bytearray, l4: int, proto: int, which: int, new: int, end: int | None = None) -> None:
    """Replace the TCP/UDP source (``which=0``) or destination (``which=2``) port."""
    if end is None:
        end = len(buf)
    off = l4 + which
    old = _u16.unpack_from(buf, off)[0]
    if old == new:
        return
    _u16.pack_into(buf, off, new)
    _patch_l4(buf, proto, _l4_csum_off(proto, l4, end), _u16.pack(old), _u16.pack(new))


def rewrite_tuple(buf: bytearray, l3: int, l4: int, proto: int, image: tuple[bytes, bytes, bytes],
                  ttl_dec: bool) -> None:
    """NAT/FULLNAT's whole per-packet rewrite at once: both addresses, both ports, and TTL − 1 if ``ttl_dec``.

    ``image`` is ``(addresses, ports, addresses + ports)`` (:meth:`pylvs.core.conntable.Conn.image`): the
    new IPv4 source and destination (8 bytes) and TCP/UDP source and destination ports (4 bytes).

    Byte for byte what :func:`dec_ttl` then :func:`set_addr`/:func:`set_port` per field give (that
    reference is kept, for ICMP, the fast path's model and the fallback below), for a datagram whose
    checksums were verified, as :func:`pylvs.core.packet.parse_ipv4` does for everything the Director
    forwards.  Why: such a datagram's sums are never zero (the version nibble; the protocol in the
    pseudo-header), so a verified checksum field other than 0xFFFF is the one value a full computation
    gives, and RFC 1624 eqn. 3 updates keep it so however the changed words are grouped.  Hence the IP
    header checksum is recomputed whole (one call over 20 bytes) and the L4 one updated once over all six
    words, rather than once per field.  A field of 0xFFFF (the other spelling of a zero sum, which
    verifies too) takes the per-field path, which is the reference by definition.
    """
    addrs, ports, both = image
    off = l4 + 16 if proto == IPPROTO_TCP else l4 + 6
    check = _u16.unpack_from(buf, off)[0]
    # Without IP options the ports follow the addresses: one 12-byte run to read and to write.
    run = l4 == l3 + 20
    old = buf[l3 + 12:l3 + 24] if run else buf[l3 + 12:l3 + 20] + buf[l4:l4 + 4]
    if old == both or check == 0xFFFF or buf[l3 + 10] == buf[l3 + 11] == 0xFF:
        if ttl_dec:
            dec_ttl(buf, l3)
        set_addr(buf, l3, l4, proto, SRC, addrs[:4])
        set_port(buf, l4, proto, 0, _u16.unpack_from(ports, 0)[0])
        set_addr(buf, l3, l4, proto, DST, addrs[4:])
        set_port(buf, l4, proto, 2, _u16.unpack_from(ports, 2)[0])
        return
    if ttl_dec:
        buf[l3 + 8] -= 1
    if run:
        buf[l3 + 12:l3 + 24] = both
    else:
        buf[l3 + 12:l3 + 20] = addrs
        buf[l4:l4 + 4] = ports
    buf[l3 + 10] = buf[l3 + 11] = 0
    _u16.pack_into(buf, l3 + 10, native.checksum(buf[l3:l4]))
    if proto == IPPROTO_UDP:
        if check == 0:
            return  # RFC 768: zero means "no checksum"; keep it that way
        # RFC 768: a computed zero is sent as all ones
        _u16.pack_into(buf, off, native.csum_replace_bytes(check, old, both) or 0xFFFF)
    else:
        _u16.pack_into(buf, off, native.csum_replace_bytes(check, old, both))


def dec_ttl(buf: bytearray, l3: int) -> None:
    """TTL − 1 with the header checksum patched (RFC 1624; the word is TTL|proto)."""
    ttl = buf[l3 + 8]
    proto = buf[l3 + 9]
    buf[l3 + 8] = ttl - 1
    check = _u16.unpack_from(buf, l3 + 10)[0]
    _u16.pack_into(buf, l3 + 10, native.csum_replace2(check, (ttl << 8) | proto, ((ttl - 1) << 8) | proto))


def set_ip_total_length(buf: bytearray, l3: int, new: int) -> None:
    old = _u16.unpack_from(buf, l3 + 2)[0]
    _u16.pack_into(buf, l3 + 2, new)
    _u16.pack_into(buf, l3 + 10, native.csum_replace2(_u16.unpack_from(buf, l3 + 10)[0], old, new))


def ip_header_checksum(buf: bytearray, l3: int, ihl: int) -> None:
    """Recompute an IPv4 header checksum from scratch (for built headers)."""
    buf[l3 + 10:l3 + 12] = b"\x00\x00"
    _u16.pack_into(buf, l3 + 10, native.checksum(memoryview(buf)[l3:l3 + ihl]))


def set_macs(buf: bytearray, dst: bytes, src: bytes) -> None:
    buf[0:6] = dst
    buf[6:12] = src
