"""The AF_PACKET socket filter (run through a model of the kernel's classic-BPF interpreter) and the
partial-checksum completion, without privileges."""

from __future__ import annotations

import pytest
from hypothesis import given

from pylvs.io import bpf
from pylvs import native
from pylvs.native import checksum, pseudo_header_sum
from pylvs.testing import arp_frame, frames, icmp_frame, ip4, tcp_frame, udp_frame

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
VIP, LIP, DIP, RIP, OTHER = "198.18.0.100", "198.19.0.250", "198.18.0.1", "198.19.0.11", "198.18.7.7"
PROG = bpf.program([ip4(VIP), ip4(LIP), ip4(DIP)], [ip4(RIP)])


def test_passes_traffic_for_our_addresses_and_from_nat_servers():
    assert bpf.run(PROG, tcp_frame(A, B, "198.18.0.10", VIP, 1234, 80, 0x02)) == bpf.ACCEPT
    assert bpf.run(PROG, tcp_frame(A, B, RIP, LIP, 8080, 1025, 0x12)) == bpf.ACCEPT
    assert bpf.run(PROG, udp_frame(A, B, RIP, "198.18.0.10", 5353, 4000, b"x")) == bpf.ACCEPT
    assert bpf.run(PROG, arp_frame(A, "ff:ff:ff:ff:ff:ff", 1, A, "198.18.0.10", "00:00:00:00:00:00", OTHER)) \
        == bpf.ACCEPT
    assert bpf.run(PROG, icmp_frame(A, B, OTHER, "198.18.0.10", 3, 1, b"\0" * 32)) == bpf.ACCEPT


def test_rejects_everything_else():
    assert bpf.run(PROG, tcp_frame(A, B, "198.18.0.10", OTHER, 1234, 80, 0x02)) == 0
    assert bpf.run(PROG, udp_frame(A, B, "198.19.0.99", "198.18.0.10", 53, 4000, b"x")) == 0
    ipv6 = bytes.fromhex(B.replace(":", "") + A.replace(":", "")) + b"\x86\xdd" + b"\x60" + b"\0" * 60
    assert bpf.run(PROG, ipv6) == 0
    assert bpf.run(PROG, b"\x01" * 10) == 0  # a load past the end rejects, as in the kernel


def test_own_outgoing_and_other_hosts_frames_are_rejected():
    f = tcp_frame(A, B, "198.18.0.10", VIP, 1234, 80, 0x02)
    assert bpf.run(PROG, f, pkttype=bpf.PACKET_OUTGOING) == 0
    assert bpf.run(PROG, f, pkttype=bpf.PACKET_OTHERHOST) == 0
    promisc = bpf.program([ip4(VIP)], [], promisc=True)
    assert bpf.run(promisc, f, pkttype=bpf.PACKET_OTHERHOST) == bpf.ACCEPT
    assert bpf.run(promisc, f, pkttype=bpf.PACKET_OUTGOING) == 0


def test_many_addresses_never_overflow_jumps():
    addrs = [(0xC6120000 + i).to_bytes(4, "big") for i in range(1500)]
    prog = bpf.program(addrs, [])
    assert all(i.jt <= 1 and i.jf <= 1 for i in prog)
    assert bpf.run(prog, tcp_frame(A, B, "198.18.0.10", "198.18.5.219", 1, 2, 0x02)) == bpf.ACCEPT
    with pytest.raises(ValueError, match="too many"):
        bpf.program([(0xC6120000 + i).to_bytes(4, "big") for i in range(2100)], [])


def _partial(frame: bytes, proto: int) -> bytearray:
    """What a NIC-offloaded frame looks like: the L4 checksum field holds only the folded pseudo-header."""
    f = bytearray(frame)
    ihl = (f[14] & 15) * 4
    off = 14 + ihl + (16 if proto == 6 else 6)
    length = int.from_bytes(f[16:18], "big") - ihl
    s = int.from_bytes(f[26:28], "big") + int.from_bytes(f[28:30], "big") + int.from_bytes(f[30:32], "big") \
        + int.from_bytes(f[32:34], "big") + proto + length
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    f[off:off + 2] = s.to_bytes(2, "big")
    return f


@pytest.mark.parametrize("make,proto", [
    (lambda: tcp_frame(A, B, "198.18.0.10", VIP, 1234, 80, 0x18, payload=b"GET / HTTP/1.1\r\n\r\n"), 6),
    (lambda: udp_frame(A, B, "198.18.0.10", VIP, 1234, 53, b"hello!!"), 17),
])
def test_complete_checksum_restores_the_real_checksum(make, proto):
    good = make()
    f = _partial(good, proto)
    assert f != bytearray(good)
    assert native.complete_checksum(f)
    assert bytes(f) == good


def test_complete_checksum_leaves_non_l4_and_fragments_alone():
    arp = bytearray(arp_frame(A, B, 1, A, "198.18.0.10", B, VIP))
    assert not native.complete_checksum(arp)
    frag = bytearray(udp_frame(A, B, "198.18.0.10", VIP, 1, 2, b"x" * 20))
    frag[20] |= 0x20  # more fragments
    before = bytes(frag)
    assert not native.complete_checksum(frag) and bytes(frag) == before


@given(frames("any"))
def test_complete_checksum_never_raises(frame):
    """Any input: no exception; when it completes, the L4 checksum then verifies (sums to zero)."""
    f = bytearray(frame)
    if native.complete_checksum(f):
        ihl = (f[14] & 15) * 4
        end = 14 + int.from_bytes(f[16:18], "big")
        seg = bytes(f[14 + ihl:end])
        s = checksum(seg, pseudo_header_sum(bytes(f[26:30]), bytes(f[30:34]), f[23], len(seg)))
        assert s == 0
