"""Malformed and unsolicited frames: exact drop reasons, counted, no state."""

from __future__ import annotations

import struct
from collections import Counter

import pytest

from golden_helpers import ACK, C_MAC, CIP, D0_MAC, FIN, RIP, RS_MAC, D1_MAC, RST, SYN, VIP, Step, fresh, run, syn_opts
from pylvs.testing import tcp_frame, udp_frame


def _ipsum(hdr: bytes) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _patch_ip(frame: bytes, **fields) -> bytes:
    """Change IPv4 header bytes, then recompute a valid header checksum over IHL bytes
    (or the first 20 if the IHL is out of range)."""
    b = bytearray(frame)
    for off, val in fields.values():
        b[14 + off] = val
    ihl = (b[14] & 0x0F) * 4
    n = ihl if 20 <= ihl <= len(b) - 14 else 20
    b[24:26] = b"\x00\x00"
    b[24:26] = struct.pack("!H", _ipsum(bytes(b[14:14 + n])))
    return bytes(b)


SYN_F = tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN, seq=1, opts=syn_opts(), ident=7)  # IP len 60
UDP_F = udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, b"abcd", ident=8)


def _flip(frame: bytes, off: int, mask: int = 0x01) -> bytes:
    b = bytearray(frame)
    b[off] ^= mask
    return bytes(b)


def _set(frame: bytes, off: int, val: int) -> bytes:
    b = bytearray(frame)
    b[off] = val
    return bytes(b)


def _udp_len(frame: bytes, ulen: int) -> bytes:
    b = bytearray(frame)
    b[38:40] = struct.pack("!H", ulen)
    return bytes(b)


CASES = [
    ("eth_truncated", SYN_F[:10]),
    ("not_for_us", tcp_frame(C_MAC, "02:00:00:00:99:99", CIP, VIP, 40000, 80, SYN, opts=syn_opts())),
    ("ip_truncated", SYN_F[:14 + 19]),
    ("ip_bad_version", _patch_ip(SYN_F, v=(0, 0x65))),
    ("ip_bad_ihl", _patch_ip(SYN_F, v=(0, 0x44))),
    ("ip_bad_total_length", _patch_ip(SYN_F, hi=(2, 0), lo=(3, 61))),   # says 61, 60 present
    ("ip_bad_total_length", _patch_ip(SYN_F, hi=(2, 0), lo=(3, 19))),   # shorter than the header
    ("ip_bad_checksum", _flip(SYN_F, 24)),
    ("ip_bad_checksum", _flip(SYN_F, 22, 0x80)),                        # TTL changed, sum not
    ("ip_fragment", _patch_ip(SYN_F, f=(6, 0x20))),                     # MF set
    ("tcp_truncated", _patch_ip(SYN_F[:14 + 20 + 19], hi=(2, 0), lo=(3, 39))),
    ("tcp_bad_data_offset", _set(SYN_F, 14 + 20 + 12, 0x40)),           # 16 < 20
    ("tcp_bad_data_offset", _set(SYN_F, 14 + 20 + 12, 0xF0)),           # 60 > 40 present
    ("tcp_bad_checksum", _flip(SYN_F, 14 + 20 + 16)),
    ("tcp_bad_checksum", _flip(SYN_F, len(SYN_F) - 1)),                 # an option byte
    ("udp_bad_length", _udp_len(UDP_F, 7)),
    ("udp_bad_length", _udp_len(UDP_F, 13)),
    ("udp_bad_checksum", _flip(UDP_F, len(UDP_F) - 1)),
    ("tcp_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, ACK, seq=1, ack=1)),
    ("tcp_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, FIN | ACK, seq=1, ack=1)),
    ("tcp_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, 0, seq=1)),
    ("tcp_rst_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, RST, seq=1)),
    ("tcp_rst_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, RST | ACK, seq=1, ack=1)),
    ("tcp_rst_no_conn", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN | RST, seq=1)),
    ("no_service", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 81, SYN, seq=1)),
    ("not_for_service", tcp_frame(RS_MAC[11], D1_MAC, RIP[11], CIP, 8080, 40000, SYN | ACK, seq=1, ack=1)),
]


@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_garbage_drop_reasons_are_exact_and_counted(mode):
    d = fresh(mode)
    steps = [Step(f"#{i} {reason}", frame, "eth1" if reason == "not_for_service" else "eth0", 1.0 + i / 100,
                  "drop", [], drop=reason) for i, (reason, frame) in enumerate(CASES)]
    run(d, steps)
    assert d.drops == Counter(reason for reason, _ in CASES)
    assert len(d.table) == 0
    assert all(s.conns == 0 for s in d.services)


def test_valid_baseline_is_accepted():
    """The frames above are corrupted copies of frames that do pass."""
    d = fresh("nat")
    assert [a.__class__.__name__ for a in d.handle(SYN_F, "eth0", 1.0)] == ["Send"]
    assert [a.__class__.__name__ for a in d.handle(UDP_F, "eth0", 1.1)] == ["Send"]
