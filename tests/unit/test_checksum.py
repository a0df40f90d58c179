"""Known-answer tests for the Internet checksum (RFC 1071, RFC 1624)."""

from __future__ import annotations

import struct

import pytest

from pylvs import native
from pylvs._pure import checksum as pure

IMPLS = [pytest.param(pure, id="pure")]
if native.IMPLEMENTATION != "pure":  # pragma: no cover - once the C extension exists
    IMPLS.append(pytest.param(native, id="native"))


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_rfc1071_section3_example(impl):
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert _fold(impl.csum_partial(data)) == 0xDDF2
    assert impl.checksum(data) == 0x220D


def test_known_ipv4_header(impl):
    hdr = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert impl.checksum(hdr) == 0xB861
    struct.pack_into("!H", hdr, 10, 0xB861)
    assert impl.checksum(hdr) == 0


def test_empty_and_zero_data(impl):
    assert impl.checksum(b"") == 0xFFFF
    assert impl.checksum(b"\x00" * 40) == 0xFFFF
    assert impl.checksum(b"\xff\xff") == 0x0000


def test_odd_length_pads_with_zero(impl):
    assert impl.checksum(b"\x12") == impl.checksum(b"\x12\x00")
    long_odd = bytes(range(37))
    assert impl.checksum(long_odd) == impl.checksum(long_odd + b"\x00")


def test_initial_sum_is_added(impl):
    assert impl.checksum(b"\x00\x01", 0x0002) == (~0x0003) & 0xFFFF
    assert impl.checksum(b"", 0x1FFFF) == 0xFFFE  # 0x1ffff folds to 0x0001


def test_large_buffer_carries(impl):
    data = b"\xff" * 4000 + b"\x01"
    # every 0xffff word is -0: the sum of the words is the lone 0x0100 ... folded
    s = 0
    for i in range(0, len(data) + 1, 2):
        chunk = (data + b"\x00")[i:i + 2]
        if len(chunk) == 2:
            s += (chunk[0] << 8) | chunk[1]
    assert impl.checksum(data) == (~_fold(s)) & 0xFFFF


def test_pseudo_header_sum(impl):
    src = bytes([198, 18, 0, 10])
    dst = bytes([198, 18, 0, 100])
    ref = src + dst + b"\x00\x06" + struct.pack("!H", 40)
    assert _fold(impl.pseudo_header_sum(src, dst, 6, 40)) == _fold(impl.csum_partial(ref))


def test_rfc1624_section4_example(impl):
    # RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285.  Eqn. 3 gives 0x0000
    # (what a full recomputation gives), not RFC 1141's 0xffff.
    assert impl.csum_replace2(0xDD2F, 0x5555, 0x3285) == 0x0000


def test_replace2_no_change(impl):
    for check in (0x0000, 0x1234, 0xFFFE):
        assert impl.csum_replace2(check, 0xABCD, 0xABCD) == check


def test_replace_corner_words(impl):
    # A header whose only non-zero word changes between 0x0000-like values.
    buf = bytearray(b"\x00\x00" + b"\x12\x34" + b"\x00\x00")
    check = impl.checksum(buf)
    buf[4:6] = b"\xff\xff"
    want = impl.checksum(bytes(b"\x00\x00") + buf[2:])
    assert impl.csum_replace2(check, 0x0000, 0xFFFF) == want
    buf[0:2] = struct.pack("!H", want)
    assert impl.checksum(buf) == 0


def test_replace4_and_replace_bytes_address_change(impl):
    hdr = bytearray.fromhex("450000730000400040110000c0a80001c0a800c7")
    check = impl.checksum(hdr)
    old = bytes(hdr[16:20])
    new = bytes([198, 19, 0, 11])
    hdr[16:20] = new
    want = impl.checksum(hdr)
    assert impl.csum_replace_bytes(check, old, new) == want
    assert impl.csum_replace4(check, int.from_bytes(old, "big"), int.from_bytes(new, "big")) == want


def test_native_picks_an_implementation():
    assert native.IMPLEMENTATION in ("pure", "native", "c")
    for name in ("checksum", "csum_partial", "csum_fold", "pseudo_header_sum",
                 "csum_replace2", "csum_replace4", "csum_replace_bytes"):
        assert callable(getattr(native, name))
