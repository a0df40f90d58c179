"""ICMP the director originates: errors (RFC 792, RFC 1812 §4.3.2) and echo replies."""

from __future__ import annotations

import struct

from pylvs import native
from pylvs.core.packet import (
    ETH_P_IP, ICMP_ERROR_TYPES, IPPROTO_ICMP, IP_OFFMASK, Packet,
)

#: RFC 1812 §4.3.2.3: quote as much of the original as fits in 576 bytes.
MAX_ERROR_DATAGRAM = 576
#: Linux sends ICMP errors with precedence "internetwork control" (0xc0).
ICMP_TOS = 0xC0
DEFAULT_TTL = 64

ICMP_TIME_EXCEEDED = 11
ICMP_EXC_TTL = 0
ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, *, ttl: int = DEFAULT_TTL,
                tos: int = 0, ident: int = 0, frag: int = 0) -> bytearray:
    """A 20-byte IPv4 header with its checksum filled in."""
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident, frag, ttl, proto, 0, src, dst))
    struct.pack_into("!H", h, 10, native.checksum(h))
    return h


def may_send_error_about(p: Packet) -> bool:
    """RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7: no error about an ICMP error, a
    non-first fragment, or a datagram from a broadcast/multicast/zero source."""
    if p.proto == IPPROTO_ICMP and p.icmp_type in ICMP_ERROR_TYPES:
        return False
    if p.frag & IP_OFFMASK:
        return False
    first = p.src[0]
    if first == 0 or first >= 224 or p.src == b"\xff\xff\xff\xff":
        return False
    return True


def error_frame(p: Packet, src_ip: bytes, eth_src: bytes, icmp_type: int, code: int,
                rest: int = 0, ident: int = 0) -> bytes:
    """An ICMP error about ``p`` (as it arrived), sent back to its sender's MAC.

    ``rest`` is the 32-bit field after the checksum (the next-hop MTU in its low
    16 bits for "fragmentation needed", RFC 1191).
    """
    orig = bytes(p.buf[p.l3:p.l3 + p.ip_len])
    quoted = orig[:MAX_ERROR_DATAGRAM - 20 - 8]
    icmp = bytearray(struct.pack("!BBHI", icmp_type, code, 0, rest)) + quoted
    struct.pack_into("!H", icmp, 2, native.checksum(icmp))
    ip = ipv4_header(src_ip, p.src, IPPROTO_ICMP, len(icmp), tos=ICMP_TOS, ident=ident)
    eth = p.src_mac + eth_src + struct.pack("!H", ETH_P_IP)
    return eth + bytes(ip) + bytes(icmp)


def echo_reply_frame(p: Packet, eth_src: bytes, ident: int = 0) -> bytes:
    """Answer an echo request (RFC 792): same id, sequence and data, type 0."""
    icmp = bytearray(p.buf[p.l4:p.l3 + p.ip_len])
    icmp[0] = 0
    icmp[2:4] = b"\x00\x00"
    struct.pack_into("!H", icmp, 2, native.checksum(icmp))
    ip = ipv4_header(p.dst, p.src, IPPROTO_ICMP, len(icmp), ident=ident)
    return p.src_mac + eth_src + struct.pack("!H", ETH_P_IP) + bytes(ip) + bytes(icmp)


def fix_icmp_checksum(buf: bytearray, l4: int, end: int) -> None:
    buf[l4 + 2:l4 + 4] = b"\x00\x00"
    struct.pack_into("!H", buf, l4 + 2, native.checksum(memoryview(buf)[l4:end]))


__all__ = ["ipv4_header", "may_send_error_about", "error_frame", "echo_reply_frame", "fix_icmp_checksum"]
