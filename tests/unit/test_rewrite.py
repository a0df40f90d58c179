"""pylvs.core.rewrite.rewrite_tuple: the slow path's one-pass NAT/FULLNAT rewrite gives byte for byte what the
per-field reference (dec_ttl, then set_addr/set_port for source and destination) gives, on verified packets,
including the checksum spellings a sender may choose (0xFFFF for a zero sum, which verifies too) and fields
that do not change.  Also the table form of the TCP state machine and the TOA strip's quick reject."""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pylvs import native
from pylvs.core.conntable import IN, OUT, Conn
from pylvs.core.packet import Packet, parse_ipv4
from pylvs.core.rewrite import DST, SRC, dec_ttl, rewrite_tuple, set_addr, set_port
from pylvs.core.tcpstate import ROWS, STATES, next_state
from pylvs.core.toa import strip_toa
from pylvs.testing import tcp_frame, udp_frame

C, D = "02:00:00:00:00:10", "02:00:00:00:01:01"
_u16 = struct.Struct("!H")
FAST = settings(max_examples=400, deadline=None)

addrs = st.sampled_from(["198.18.0.10", "198.18.0.100", "198.19.0.11", "0.0.0.0", "255.255.0.0",
                         "255.255.255.255"]) | st.ip_addresses(v=4).map(str)
ports = st.sampled_from([0, 1, 80, 8080, 0xFFFF]) | st.integers(0, 65535)


def _zero_sum_word(buf: bytearray, check_off: int, word_off: int, start: int, end: int, initial: int) -> None:
    """Make the checksum field at ``check_off`` come out 0 by choosing the word at ``word_off``."""
    buf[check_off:check_off + 2] = b"\x00\x00"
    buf[word_off:word_off + 2] = b"\x00\x00"
    _u16.pack_into(buf, word_off, native.checksum(memoryview(buf)[start:end], initial))


def make(proto, src, sport, dst, dport, ttl, payload, ip_ffff, l4_ffff, ip_opts=False) -> bytearray:
    if proto == 6:
        f = bytearray(tcp_frame(C, D, src, dst, sport, dport, 0x18, payload=payload, ttl=ttl))
    else:
        f = bytearray(udp_frame(C, D, src, dst, sport, dport, payload, ttl=ttl))
    ihl = 20
    if ip_opts:
        # NOP NOP NOP EOL: the ports no longer follow the addresses (the L4 sums do not cover IP options)
        ihl = 24
        f[34:34] = b"\x01\x01\x01\x00"
        f[14] = 0x46
        _u16.pack_into(f, 16, _u16.unpack_from(f, 16)[0] + 4)
        _zero_sum_word(f, 24, 24, 14, 14 + ihl, 0)  # (the "word" is the checksum itself: a plain recompute)
    l4 = 14 + ihl
    check_off = l4 + 16 if proto == 6 else l4 + 6
    if l4_ffff and len(payload) >= 2:
        # A zero sum spelled 0xFFFF: choose the first payload word so the true checksum is 0, then write 0xFFFF.
        end = len(f)
        pseudo = native.pseudo_header_sum(bytes(f[26:30]), bytes(f[30:34]), proto, end - l4)
        start = check_off + 2 if proto == 17 else l4 + 20
        _zero_sum_word(f, check_off, start, l4, end, pseudo)
        f[check_off:check_off + 2] = b"\xff\xff"
    if ip_ffff:
        _zero_sum_word(f, 24, 18, 14, 14 + ihl, 0)  # the ID word
        f[24:26] = b"\xff\xff"
    return f


def reference(buf: bytearray, p: Packet, image, ttl_dec: bool) -> None:
    a, pt = image[0], image[1]
    if ttl_dec:
        dec_ttl(buf, p.l3)
    set_addr(buf, p.l3, p.l4, p.proto, SRC, a[:4])
    set_port(buf, p.l4, p.proto, 0, _u16.unpack_from(pt, 0)[0])
    set_addr(buf, p.l3, p.l4, p.proto, DST, a[4:])
    set_port(buf, p.l4, p.proto, 2, _u16.unpack_from(pt, 2)[0])


@FAST
@given(proto=st.sampled_from([6, 17]), src=addrs, sport=ports, dst=addrs, dport=ports,
       ttl=st.integers(2, 255), payload=st.binary(max_size=40),
       ip_ffff=st.booleans(), l4_ffff=st.booleans(), udp_none=st.booleans(),
       keep=st.lists(st.booleans(), min_size=4, max_size=4),
       nsrc=addrs, nsport=ports, ndst=addrs, ndport=ports, ttl_dec=st.booleans(), ip_opts=st.booleans())
@example(proto=6, src="198.18.0.10", sport=40000, dst="198.18.0.100", dport=80, ttl=64, payload=b"ab",
         ip_ffff=False, l4_ffff=True, udp_none=False, keep=[True, True, True, False], nsrc="1.1.1.1", nsport=1,
         ndst="1.1.1.1", ndport=0, ttl_dec=False, ip_opts=False)
def test_rewrite_tuple_is_the_per_field_rewrite(proto, src, sport, dst, dport, ttl, payload, ip_ffff, l4_ffff,
                                                udp_none, keep, nsrc, nsport, ndst, ndport, ttl_dec, ip_opts):
    f = make(proto, src, sport, dst, dport, ttl, payload, ip_ffff, l4_ffff, ip_opts)
    if proto == 17 and udp_none:
        f[len(f) - len(payload) - 2:len(f) - len(payload)] = b"\x00\x00"  # no UDP checksum
    p = parse_ipv4(f)
    assert isinstance(p, Packet), p
    # Some fields keep their value (NAT inbound keeps the source, outbound the destination).
    new_src = src if keep[0] else nsrc
    new_sport = sport if keep[1] else nsport
    new_dst = dst if keep[2] else ndst
    new_dport = dport if keep[3] else ndport
    c = Conn(proto, b"", 0, b"", 0, bytes(map(int, new_src.split("."))), new_sport,
             bytes(map(int, new_dst.split("."))), new_dport, None, None, "nat")
    ref = bytearray(f)
    assert p.l4 == (38 if ip_opts else 34)
    reference(ref, p, c.image(IN), ttl_dec)
    rewrite_tuple(f, p.l3, p.l4, proto, c.image(IN), ttl_dec)
    assert f == ref


def test_conn_images():
    c = Conn(6, b"\x01\x01\x01\x01", 1000, b"\x02\x02\x02\x02", 80, b"\x03\x03\x03\x03", 2000,
             b"\x04\x04\x04\x04", 8080, None, None, "fullnat")
    assert c.rw_in is None  # made on first use
    assert c.image(IN) == (b"\x03\x03\x03\x03\x04\x04\x04\x04", struct.pack("!HH", 2000, 8080),
                       b"\x03\x03\x03\x03\x04\x04\x04\x04" + struct.pack("!HH", 2000, 8080))
    assert c.image(OUT) == (b"\x02\x02\x02\x02\x01\x01\x01\x01", struct.pack("!HH", 80, 1000),
                        b"\x02\x02\x02\x02\x01\x01\x01\x01" + struct.pack("!HH", 80, 1000))


def test_state_rows_are_next_state():
    for d in range(3):
        for s in range(len(STATES)):
            for f in range(-1, 600):
                assert ROWS[d][f & 0xFF][s] == next_state(d, s, f)


@given(opts=st.lists(st.sampled_from([b"\x01", b"\x02\x04\x05\xb4", b"\xfe\x08\x1f\x90\xc6\x12\x00\x0a",
                                      b"\x08\x0a" + b"\xfe" * 8, b"\x04\x02", b"\xfe\x04\x00\x00", b"\x00"]),
                     max_size=6).map(lambda xs: b"".join(xs)).map(lambda b: (b + b"\x00" * (-len(b) % 4))[:40]),
       kind=st.sampled_from([254, 253]))
@settings(max_examples=200, deadline=None)
def test_strip_toa_quick_reject_changes_nothing(opts, kind):
    """Only a packet with the kind byte somewhere in its options can lose an option (the rest is skipped)."""
    f = bytearray(tcp_frame(C, D, "198.18.0.10", "198.18.0.100", 1, 80, 0x10, opts=opts))
    p = parse_ipv4(f)
    assert isinstance(p, Packet)
    before = bytes(f)
    n = strip_toa(p, kind)
    if kind not in opts:
        assert n == 0 and bytes(f) == before
    assert (n > 0) == (bytes(f) != before)
