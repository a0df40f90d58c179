"""pylvs.core.packet: every drop reason of parse_ipv4, padding, offsets, TCP options."""

from __future__ import annotations

import struct

import pytest

from pylvs.core.packet import ETH_HLEN, Packet, iter_tcp_options, parse_icmp_inner, parse_ipv4
from pylvs.testing import icmp_frame, tcp_frame, udp_frame

CMAC = "02:00:00:00:00:10"
DMAC = "02:00:00:00:01:01"
ETH = bytes.fromhex("020000000101" "020000000010" "0800")
SRC = bytes([198, 18, 0, 10])
DST = bytes([198, 18, 0, 100])


# ---------------------------------------------------------------- independent helpers

def ref_checksum(data: bytes) -> int:
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip_header(proto: int, payload_len: int, *, ihl: int = 20, total: int | None = None, frag: int = 0,
              version: int = 4, ttl: int = 64, options: bytes = b"") -> bytearray:
    assert len(options) == ihl - 20 or ihl < 20
    if total is None:
        total = ihl + payload_len
    h = bytearray(struct.pack("!BBHHHBBH4s4s", (version << 4) | ((ihl // 4) & 0x0F), 0, total, 7, frag, ttl,
                              proto, 0, SRC, DST)) + options
    struct.pack_into("!H", h, 10, ref_checksum(bytes(h[:max(ihl, 20)])))
    return h


def l4_sum_fix(seg: bytearray, proto: int, off: int) -> bytearray:
    seg[off:off + 2] = b"\x00\x00"
    ph = SRC + DST + bytes((0, proto)) + struct.pack("!H", len(seg))
    struct.pack_into("!H", seg, off, ref_checksum(ph + bytes(seg)))
    return seg


def tcp_segment(flags: int = 0x02, payload: bytes = b"", opts: bytes = b"", doff: int | None = None) -> bytearray:
    if doff is None:
        doff = 20 + len(opts)
    seg = bytearray(struct.pack("!HHIIBBHHH", 40000, 80, 1000, 0, (doff // 4) << 4, flags, 64240, 0, 0))
    seg += opts + payload
    return l4_sum_fix(seg, 6, 16)


def udp_datagram(payload: bytes = b"x", ulen: int | None = None, zero_sum: bool = False) -> bytearray:
    if ulen is None:
        ulen = 8 + len(payload)
    seg = bytearray(struct.pack("!HHHH", 40000, 53, ulen, 0)) + payload
    if zero_sum:
        return seg
    return l4_sum_fix(seg, 17, 6)


def icmp_msg(body: bytes = b"\x00\x01\x00\x01abcd", t: int = 8) -> bytearray:
    m = bytearray(bytes((t, 0, 0, 0)) + body)
    struct.pack_into("!H", m, 2, ref_checksum(bytes(m)))
    return m


def frame(proto: int, l4: bytes, **kw) -> bytearray:
    return bytearray(ETH + ip_header(proto, len(l4), **kw) + l4)


# ---------------------------------------------------------------- valid frames

def test_valid_tcp_fields():
    f = bytearray(tcp_frame(CMAC, DMAC, "198.18.0.10", "198.18.0.100", 40000, 80, 0x12, seq=7, ack=9,
                            payload=b"hello", opts=b"\x02\x04\x05\xb4"))
    p = parse_ipv4(f)
    assert isinstance(p, Packet)
    assert p.buf is f
    assert (p.l3, p.l4, p.proto) == (ETH_HLEN, ETH_HLEN + 20, 6)
    assert (p.src, p.dst) == (SRC, DST)
    assert (p.sport, p.dport, p.seq, p.ack, p.flags, p.doff) == (40000, 80, 7, 9, 0x12, 24)
    assert p.ip_len == 20 + 24 + 5 and p.doff == 24
    assert p.df and p.ttl == 64
    assert p.src_mac == bytes.fromhex("020000000010") and bytes(p.buf[0:6]) == bytes.fromhex("020000000101")
    assert bytes(p.buf[p.l3:]) == bytes(f[14:])


def test_valid_udp_and_icmp_fields():
    p = parse_ipv4(bytearray(udp_frame(CMAC, DMAC, "198.18.0.10", "198.18.0.100", 1234, 53, b"q" * 9)))
    assert isinstance(p, Packet)
    assert (p.proto, p.sport, p.dport, p.ip_len) == (17, 1234, 53, 20 + 8 + 9)
    p = parse_ipv4(bytearray(icmp_frame(CMAC, DMAC, "198.18.0.10", "198.18.0.100", 8, 0, b"\x00\x01\x00\x02")))
    assert isinstance(p, Packet)
    assert (p.proto, p.icmp_type, p.icmp_code) == (1, 8, 0)


def test_udp_zero_checksum_means_none():
    p = parse_ipv4(frame(17, udp_datagram(b"abc", zero_sum=True)))
    assert isinstance(p, Packet)


def test_ip_options_move_l4():
    opts = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    seg = tcp_segment()
    p = parse_ipv4(frame(6, seg, ihl=24, options=opts))
    assert isinstance(p, Packet)
    assert p.l4 == ETH_HLEN + 24 and p.sport == 40000


def test_other_protocol_parses_without_l4():
    p = parse_ipv4(frame(47, b"\x00" * 4))
    assert isinstance(p, Packet) and p.proto == 47


def test_ethernet_padding_trimmed():
    raw = udp_frame(CMAC, DMAC, "198.18.0.10", "198.18.0.100", 1234, 53, b"q")
    assert len(raw) == 14 + 20 + 8 + 1
    padded = bytearray(raw + b"\xa5" * (60 - len(raw)))  # junk padding, not zeros
    assert len(padded) == 60
    p = parse_ipv4(padded)
    assert isinstance(p, Packet)
    assert len(p.buf) == 14 + 29 == p.l3 + p.ip_len
    assert bytes(p.buf) == raw
    # a TCP frame padded the same way still checksums without the padding
    raw = tcp_frame(CMAC, DMAC, "198.18.0.10", "198.18.0.100", 40000, 80, 0x10)
    assert len(raw) == 54
    p = parse_ipv4(bytearray(raw + b"\x00" * 6))
    assert isinstance(p, Packet) and len(p.buf) == 54 and p.ip_len == 40


def test_parse_at_other_l3_offset():
    ip = ip_header(17, 9) + udp_datagram()
    p = parse_ipv4(bytearray(b"\xee" * 18) + ip, l3=18)
    assert isinstance(p, Packet) and p.l3 == 18 and p.l4 == 38


# ---------------------------------------------------------------- drop reasons

def test_ip_truncated():
    assert parse_ipv4(bytearray(ETH + b"\x45" + b"\x00" * 18)) == "ip_truncated"
    assert parse_ipv4(bytearray(ETH)) == "ip_truncated"


def test_ip_bad_version():
    f = frame(17, udp_datagram(), version=6)
    assert parse_ipv4(f) == "ip_bad_version"


def test_ip_bad_ihl():
    h = bytearray(ip_header(17, 9) + udp_datagram())
    h[0] = 0x44  # IHL 16 bytes
    assert parse_ipv4(bytearray(ETH) + h) == "ip_bad_ihl"


@pytest.mark.parametrize("delta", [+1, +100])
def test_ip_total_length_beyond_buffer(delta):
    seg = udp_datagram()
    f = frame(17, seg, total=20 + len(seg) + delta)
    assert parse_ipv4(f) == "ip_bad_total_length"


def test_ip_total_length_below_header():
    assert parse_ipv4(frame(17, udp_datagram(), total=19)) == "ip_bad_total_length"
    # IHL 24 with total 22: shorter than its own header
    assert parse_ipv4(frame(17, udp_datagram(), ihl=24, options=b"\x01" * 4, total=22)) == "ip_bad_total_length"


def test_ihl_beyond_total_and_buffer():
    # IHL 60 on a 28-byte datagram
    h = bytearray(ip_header(17, 8) + udp_datagram(b""))
    h[0] = 0x4F
    assert parse_ipv4(bytearray(ETH) + h) == "ip_bad_total_length"


def test_ip_bad_checksum():
    f = frame(17, udp_datagram())
    f[14 + 10] ^= 0x01
    assert parse_ipv4(f) == "ip_bad_checksum"


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x2000 | 0x0010, 0x4000 | 0x0005])
def test_ip_fragment(frag):
    assert parse_ipv4(frame(17, udp_datagram(), frag=frag)) == "ip_fragment"


def test_df_alone_is_not_a_fragment():
    assert isinstance(parse_ipv4(frame(17, udp_datagram(), frag=0x4000)), Packet)


def test_tcp_truncated():
    seg = tcp_segment()[:19]
    assert parse_ipv4(frame(6, seg)) == "tcp_truncated"
    assert parse_ipv4(frame(6, b"")) == "tcp_truncated"


@pytest.mark.parametrize("doff", [0, 4, 16])
def test_tcp_data_offset_too_small(doff):
    assert parse_ipv4(frame(6, tcp_segment(doff=doff))) == "tcp_bad_data_offset"


def test_tcp_data_offset_beyond_segment():
    # data offset 60 on a 24-byte segment
    seg = tcp_segment(opts=b"\x02\x04\x05\xb4", doff=60)
    assert parse_ipv4(frame(6, seg)) == "tcp_bad_data_offset"


def test_tcp_bad_checksum():
    seg = tcp_segment(payload=b"data")
    seg[16] ^= 0x80
    assert parse_ipv4(frame(6, seg)) == "tcp_bad_checksum"
    # a flipped payload byte is caught too
    seg = tcp_segment(payload=b"data")
    seg[-1] ^= 0x01
    assert parse_ipv4(frame(6, seg)) == "tcp_bad_checksum"


def test_verify_l4_false_skips_l4_checksums():
    seg = tcp_segment(payload=b"data")
    seg[16] ^= 0x80
    assert isinstance(parse_ipv4(frame(6, seg), verify_l4=False), Packet)
    m = icmp_msg()
    m[2] ^= 1
    assert isinstance(parse_ipv4(frame(1, m), verify_l4=False), Packet)


def test_udp_truncated():
    assert parse_ipv4(frame(17, udp_datagram()[:7])) == "udp_truncated"


@pytest.mark.parametrize("ulen", [0, 7, 20, 9])
def test_udp_bad_length(ulen):
    # payload of 2 bytes: datagram is 10 bytes; 0/7 are < 8, 20 exceeds it, 9 disagrees with IP
    seg = bytearray(struct.pack("!HHHH", 40000, 53, ulen, 0)) + b"ab"
    assert parse_ipv4(frame(17, seg)) == "udp_bad_length"


def test_udp_bad_checksum():
    seg = udp_datagram(b"payload")
    seg[-1] ^= 0xFF
    assert parse_ipv4(frame(17, seg)) == "udp_bad_checksum"


def test_icmp_truncated():
    assert parse_ipv4(frame(1, icmp_msg(b"\x00\x01")[:7])) == "icmp_truncated"


def test_icmp_bad_checksum():
    m = icmp_msg()
    m[-1] ^= 0x01
    assert parse_ipv4(frame(1, m)) == "icmp_bad_checksum"


def test_drop_reasons_do_not_depend_on_padding():
    """A bad frame stays bad with Ethernet padding after it (no reading into the pad)."""
    seg = tcp_segment()[:19]
    f = frame(6, seg) + b"\x00" * 20
    assert parse_ipv4(f) == "tcp_truncated"


# ---------------------------------------------------------------- ICMP inner and TCP options

def test_parse_icmp_inner():
    inner = ip_header(6, 20) + tcp_segment()
    m = icmp_msg(b"\x00\x00\x05\xdc" + bytes(inner[:28]), t=3)
    p = parse_ipv4(frame(1, m))
    assert isinstance(p, Packet)
    q = parse_icmp_inner(p.buf, p)
    assert not isinstance(q, str)
    assert (q.proto, q.src, q.dst, q.sport, q.dport, q.ihl) == (6, SRC, DST, 40000, 80, 20)
    # fewer than 8 bytes of L4 quoted
    m = icmp_msg(b"\x00\x00\x05\xdc" + bytes(inner[:27]), t=3)
    p = parse_ipv4(frame(1, m))
    assert parse_icmp_inner(p.buf, p) == "icmp_bad_inner"


def test_iter_tcp_options():
    opts = b"\x01\x02\x04\x05\xb4\x01\x03\x03\x07\x00\xff\xff"
    assert list(iter_tcp_options(opts, 0, len(opts))) == [(0, 1, 1), (1, 2, 4), (5, 1, 1), (6, 3, 3)]
    # a length overrunning the header, or below 2, ends the walk
    assert list(iter_tcp_options(b"\x02\x08\x05\xb4", 0, 4)) == []
    assert list(iter_tcp_options(b"\x01\x08\x01", 0, 3)) == [(0, 1, 1)]
    assert list(iter_tcp_options(b"\x08\x00\x01\x01", 0, 4)) == []
    # a kind byte with no room for its length
    assert list(iter_tcp_options(b"\x01\x02", 0, 2)) == [(0, 1, 1)]
