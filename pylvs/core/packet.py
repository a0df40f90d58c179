"""Strict frame parsing: our own bounds checks before anything trusts a header.

dpkt is lenient (it does not check the IPv4 total length against the buffer nor
the TCP data offset, and swallows L4 errors), so the datapath validates every
field it will use here, with plain ``struct`` reads, and turns anything wrong
into a drop reason (a string).  The result is a :class:`Packet`: offsets into a
``bytearray`` that the rewrite code edits in place.
"""

from __future__ import annotations

import struct

from pylvs import native

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PSH = 0x08
TH_ACK = 0x10

#: ICMP types IPVS ties to a connection (ip_vs_in_icmp / ip_vs_out_icmp):
#: destination unreachable, source quench, time exceeded.
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_FRAG_NEEDED = 4  # code of DEST_UNREACH
RELATED_ICMP_TYPES = frozenset({ICMP_DEST_UNREACH, ICMP_SOURCE_QUENCH, ICMP_TIME_EXCEEDED})
#: RFC 1122 §3.2.2: never answer an ICMP error with an ICMP error.
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})

BROADCAST = b"\xff" * 6

_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_u16x4 = struct.Struct("!HHHH")


class Packet:
    """A validated IPv4 frame.  ``buf`` holds Ethernet + IP datagram, padding trimmed.

    Offsets: ``l3`` (always 14), ``l4`` (14 + IHL).  L4 fields are filled for
    TCP and UDP (ports, flags) and ICMP (type, code).
    """

    __slots__ = (
        "buf", "l3", "l4", "proto", "src", "dst", "ttl", "frag", "ip_len",
        "sport", "dport", "flags", "seq", "ack", "doff", "icmp_type", "icmp_code",
    )

    def __init__(self) -> None:
        self.sport = self.dport = self.flags = self.seq = self.ack = self.doff = 0
        self.icmp_type = self.icmp_code = -1

    @property
    def src_mac(self) -> bytes:
        return bytes(self.buf[6:12])

    @property
    def df(self) -> bool:
        return bool(self.frag & IP_DF)


def l4_checksum_ok(buf: bytearray, l3: int, l4: int, end: int, proto: int) -> bool:
    """Verify the TCP/UDP checksum over the pseudo-header (RFC 793, RFC 768)."""
    src = bytes(buf[l3 + 12:l3 + 16])
    dst = bytes(buf[l3 + 16:l3 + 20])
    seg = memoryview(buf)[l4:end]
    return native.csum_fold(native.csum_partial(seg, native.pseudo_header_sum(src, dst, proto, end - l4))) == 0


#: The IPv4 header fields the datapath reads, in one call: version/IHL, total length, flags/fragment offset,
#: TTL, protocol, source, destination (TOS, ID and the checksum are skipped).
_IPV4 = struct.Struct("!BxHxxHBBxx4s4s")
#: TCP ports, sequence and acknowledgement numbers, data offset byte, flags.
_TCP = struct.Struct("!HHIIBB")
_PORTS = struct.Struct("!HH")
_new_packet = object.__new__


def _l4_sum_ok(buf: bytearray, l3: int, l4: int, end: int, proto: int, src: bytes, dst: bytes) -> bool:
    """:func:`l4_checksum_ok` for :func:`parse_ipv4`, which has the addresses at hand."""
    if l4 == l3 + 20:
        # No IP options: the addresses sit right before the segment, so the pseudo-header (RFC 793 §3.1) is
        # those 8 bytes plus protocol and length, and one checksum call over both does (the same sum).
        return native.checksum(buf[l3 + 12:end], proto + end - l4) == 0
    return native.checksum(buf[l4:end], native.pseudo_header_sum(src, dst, proto, end - l4)) == 0


def parse_ipv4(buf: bytearray, l3: int = ETH_HLEN, *, verify_l4: bool = True) -> Packet | str:
    """Validate an IPv4 datagram starting at ``l3`` and return a :class:`Packet`.

    On success ``buf`` is truncated to the IP total length (Ethernet padding
    trimmed, RFC 894).  On failure the drop reason is returned.

    This runs for every slow-path frame, so the header is read with one
    ``struct`` call per layer and the :class:`Packet` is filled without its
    ``__init__`` (every field is set below); the checks and their order are the
    reference ones, each drop reason as documented in tests/unit/test_packet.py.
    """
    avail = len(buf) - l3
    if avail < 20:
        return "ip_truncated"
    vihl, total, frag, ttl, proto, src, dst = _IPV4.unpack_from(buf, l3)
    if vihl >> 4 != 4:
        return "ip_bad_version"
    ihl = (vihl & 0x0F) * 4
    if ihl < 20:
        return "ip_bad_ihl"
    if total < ihl or total > avail:
        return "ip_bad_total_length"
    if native.checksum(buf[l3:l3 + ihl]) != 0:  # (a short slice is cheaper than a memoryview of it)
        return "ip_bad_checksum"
    if avail > total:
        del buf[l3 + total:]  # Ethernet padding (or trailing junk) is not ours to forward
    if frag & (IP_MF | IP_OFFMASK):
        # IPVS defragments first; we do not reassemble yet, so a fragment is
        # a counted drop rather than a half-translated datagram.
        return "ip_fragment"
    p = _new_packet(Packet)
    p.buf = buf
    p.l3 = l3
    p.l4 = l4 = l3 + ihl
    p.ip_len = total
    p.ttl = ttl
    p.proto = proto
    p.frag = frag
    p.src = src
    p.dst = dst
    end = l3 + total
    l4len = end - l4
    if proto == IPPROTO_TCP:
        if l4len < 20:
            return "tcp_truncated"
        p.sport, p.dport, p.seq, p.ack, off, p.flags = _TCP.unpack_from(buf, l4)
        doff = (off >> 4) * 4
        if doff < 20 or doff > l4len:
            return "tcp_bad_data_offset"
        if verify_l4 and not _l4_sum_ok(buf, l3, l4, end, proto, src, dst):
            return "tcp_bad_checksum"
        p.doff = doff
        p.icmp_type = p.icmp_code = -1
    elif proto == IPPROTO_UDP:
        if l4len < 8:
            return "udp_truncated"
        sport, dport, ulen, check = _u16x4.unpack_from(buf, l4)
        if ulen < 8 or ulen > l4len:
            return "udp_bad_length"
        if ulen < l4len:
            # Bytes past the UDP length inside the IP datagram: the two length
            # fields disagree (RFC 768); drop rather than guess which is right.
            return "udp_bad_length"
        if verify_l4 and check != 0 and not _l4_sum_ok(buf, l3, l4, end, proto, src, dst):
            return "udp_bad_checksum"
        p.sport, p.dport = sport, dport
        p.flags = p.seq = p.ack = p.doff = 0
        p.icmp_type = p.icmp_code = -1
    else:
        p.sport = p.dport = p.flags = p.seq = p.ack = p.doff = 0
        if proto == IPPROTO_ICMP:
            if l4len < 8:
                return "icmp_truncated"
            if verify_l4 and native.checksum(memoryview(buf)[l4:end]) != 0:
                return "icmp_bad_checksum"
            p.icmp_type = buf[l4]
            p.icmp_code = buf[l4 + 1]
        else:
            p.icmp_type = p.icmp_code = -1
    return p


class Inner:
    """The IP header + first L4 bytes quoted inside an ICMP error (RFC 792)."""

    __slots__ = ("off", "ihl", "proto", "src", "dst", "sport", "dport", "avail")


def parse_icmp_inner(buf: bytearray, p: Packet) -> Inner | str:
    """Parse the datagram quoted by an ICMP error: IP header plus ≥ 8 bytes of L4."""
    off = p.l4 + 8
    end = p.l3 + p.ip_len
    avail = end - off
    if avail < 20 or buf[off] >> 4 != 4:
        return "icmp_bad_inner"
    ihl = (buf[off] & 0x0F) * 4
    if ihl < 20 or avail < ihl + 8:
        return "icmp_bad_inner"
    q = Inner()
    q.off = off
    q.ihl = ihl
    q.proto = buf[off + 9]
    q.src = bytes(buf[off + 12:off + 16])
    q.dst = bytes(buf[off + 16:off + 20])
    q.avail = avail
    if q.proto in (IPPROTO_TCP, IPPROTO_UDP):
        q.sport, q.dport = _PORTS.unpack_from(buf, off + ihl)
    else:
        q.sport = q.dport = 0
    return q


def iter_tcp_options(buf: bytearray | bytes, start: int, end: int):
    """Yield ``(offset, kind, length)`` for each option, RFC 793/9293 §3.1.

    Stops at EOL or at the first malformed option (length < 2 or overrunning
    the header), which is where a receiving TCP stops parsing too.
    """
    i = start
    while i < end:
        kind = buf[i]
        if kind == 0:  # EOL
            return
        if kind == 1:  # NOP
            yield i, 1, 1
            i += 1
            continue
        if i + 1 >= end:
            return
        ln = buf[i + 1]
        if ln < 2 or i + ln > end:
            return
        yield i, kind, ln
        i += ln
