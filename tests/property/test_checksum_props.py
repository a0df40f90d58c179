"""Hypothesis properties of the Internet checksum (pylvs.native / pylvs._pure.checksum).

Everything is compared with a deliberately naive RFC 1071 reference written
here (word by word, end-around carry after every addition), never with pylvs's
own code.  The incremental updates (RFC 1624) must equal a full recomputation
of the checksum after the field changed.
"""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pylvs import native
from pylvs._pure import checksum as pure

FAST = settings(max_examples=300, deadline=None)

# ---------------------------------------------------------------- reference


def ref_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 one's-complement sum, folded to 16 bits (0..0xFFFF)."""
    s = 0
    # fold the initial value first, as a sum of 16-bit pieces
    while initial:
        s += initial & 0xFFFF
        initial >>= 16
        s = (s & 0xFFFF) + (s >> 16)
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)  # end-around carry
    return s


def ref_checksum(data: bytes, initial: int = 0) -> int:
    return (~ref_sum(data, initial)) & 0xFFFF


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def equiv(a: int, b: int) -> bool:
    """Equal as one's-complement numbers (0x0000 and 0xFFFF are both zero)."""
    return a % 0xFFFF == b % 0xFFFF


IMPLS = [pure]
if native.IMPLEMENTATION != "pure":  # pragma: no cover - once the C extension exists
    IMPLS.append(native)
impls = st.sampled_from(IMPLS)

blobs = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=17, max_size=1600),
    st.sampled_from([b"", b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\xff" * 17, b"\x00" * 33,
                     b"\xff\xff" * 40, b"\xff" * 41]),
)
initials = st.one_of(st.just(0), st.integers(0, 0xFFFF), st.integers(0, 2**40))


# ---------------------------------------------------------------- full checksum

@FAST
@given(impl=impls, data=blobs, initial=initials)
def test_csum_partial_matches_reference(impl, data, initial):
    s = impl.csum_partial(data, initial)
    assert s >= 0
    folded = fold(s)
    assert folded == ref_sum(data, initial)


@FAST
@given(impl=impls, data=blobs, initial=initials)
def test_checksum_matches_reference(impl, data, initial):
    assert impl.checksum(data, initial) == ref_checksum(data, initial)


@FAST
@given(impl=impls, data=blobs)
def test_checksum_accepts_bytes_bytearray_memoryview(impl, data):
    want = ref_checksum(data)
    assert impl.checksum(bytes(data)) == want
    assert impl.checksum(bytearray(data)) == want
    assert impl.checksum(memoryview(bytearray(data))) == want
    # a memoryview slice at an odd offset of a bigger buffer
    big = bytearray(b"\x5a") + bytearray(data) + b"\xa5"
    assert impl.checksum(memoryview(big)[1:1 + len(data)]) == want


@FAST
@given(impl=impls, data=blobs, split=st.integers(0, 800))
def test_csum_partial_chains_over_even_split(impl, data, split):
    """Summing two even-aligned halves with ``initial`` equals summing the whole."""
    cut = min(split, len(data)) & ~1
    s = impl.csum_partial(data[cut:], impl.csum_partial(data[:cut]))
    assert fold(s) == ref_sum(data)


@FAST
@given(impl=impls, data=st.binary(min_size=2, max_size=300), pos=st.integers(0, 149))
def test_inserting_the_checksum_verifies_to_zero(impl, data, pos):
    """RFC 1071: a buffer whose checksum field holds the checksum sums to 0xFFFF."""
    data = bytearray(data if len(data) % 2 == 0 else data + b"\x00")
    off = (pos * 2) % len(data)
    data[off:off + 2] = b"\x00\x00"
    struct.pack_into("!H", data, off, impl.checksum(data))
    assert ref_sum(bytes(data)) == 0xFFFF
    assert impl.checksum(data) == 0


@FAST
@given(impl=impls, src=st.binary(min_size=4, max_size=4), dst=st.binary(min_size=4, max_size=4),
       proto=st.sampled_from([6, 17]), length=st.integers(0, 65535))
def test_pseudo_header_sum(impl, src, dst, proto, length):
    ph = src + dst + bytes((0, proto)) + struct.pack("!H", length)
    assert fold(impl.pseudo_header_sum(src, dst, proto, length)) == ref_sum(ph)


# ---------------------------------------------------------------- incremental (RFC 1624)

words = st.one_of(st.sampled_from([0x0000, 0xFFFF, 0x0001, 0xFFFE, 0x8000]), st.integers(0, 0xFFFF))


def _buffer_with_field(data: bytes, nwords_min: int) -> bytearray:
    b = bytearray(data)
    if len(b) % 2:
        b.append(0)
    while len(b) < 2 * nwords_min:
        b += b"\x00\x00"
    return b


@FAST
@given(impl=impls, data=st.binary(min_size=4, max_size=120), wpos=st.integers(0, 1000), new=words,
       old=st.one_of(st.none(), words))
@example(impl=pure, data=b"\x00\x00\x00\x00", wpos=1, new=0xFFFF, old=0x0000)
@example(impl=pure, data=b"\x00\x00\x00\x00", wpos=1, new=0x0000, old=0xFFFF)
@example(impl=pure, data=b"\xff\xff\x00\x00\x12\x34", wpos=1, new=0x0000, old=0xFFFF)
@example(impl=pure, data=b"\x00\x00\x00\x00\xff\xfe", wpos=1, new=0x0001, old=0x0000)
def test_csum_replace2_equals_recomputation(impl, data, wpos, new, old):
    """Word 0 is the checksum field; another word changes from ``old`` to ``new``."""
    buf = _buffer_with_field(data, 2)
    n = len(buf) // 2
    w = 1 + wpos % (n - 1)
    if old is not None:
        struct.pack_into("!H", buf, 2 * w, old)
    buf[0:2] = b"\x00\x00"
    check = ref_checksum(bytes(buf))
    old_word = struct.unpack_from("!H", buf, 2 * w)[0]
    struct.pack_into("!H", buf, 2 * w, new)
    full = ref_checksum(bytes(buf))
    got = impl.csum_replace2(check, old_word, new)
    assert 0 <= got <= 0xFFFF
    assert equiv(got, full)
    # RFC 1624 §3: the result must be what a full recomputation gives, bit for
    # bit.  The only representation a full computation over data that is not
    # all zeros can never yield is 0xFFFF (the sum is never +0 then).
    if any(buf[2:]):
        assert got == full, (hex(check), hex(old_word), hex(new), hex(got), hex(full))


longs = st.one_of(st.sampled_from([0, 0xFFFFFFFF, 0xFFFF0000, 0x0000FFFF, 1]), st.integers(0, 2**32 - 1))


@FAST
@given(impl=impls, data=st.binary(min_size=6, max_size=120), wpos=st.integers(0, 1000), new=longs,
       old=st.one_of(st.none(), longs))
@example(impl=pure, data=b"\x00" * 6, wpos=0, new=0xFFFFFFFF, old=0)
@example(impl=pure, data=b"\x00" * 6, wpos=0, new=0, old=0xFFFFFFFF)
def test_csum_replace4_equals_recomputation(impl, data, wpos, new, old):
    buf = _buffer_with_field(data, 3)
    n = len(buf) // 2
    w = 1 + wpos % (n - 2)  # 32-bit field at words w, w+1 (16-bit aligned)
    if old is not None:
        struct.pack_into("!I", buf, 2 * w, old)
    buf[0:2] = b"\x00\x00"
    check = ref_checksum(bytes(buf))
    old_val = struct.unpack_from("!I", buf, 2 * w)[0]
    struct.pack_into("!I", buf, 2 * w, new)
    full = ref_checksum(bytes(buf))
    got = impl.csum_replace4(check, old_val, new)
    assert 0 <= got <= 0xFFFF
    assert equiv(got, full)
    if any(buf[2:]):
        assert got == full


@FAST
@given(impl=impls, data=st.binary(min_size=2, max_size=120), wpos=st.integers(0, 1000),
       nwords=st.integers(1, 8), fill=st.sampled_from(["random", "zero", "ones"]), rnd=st.data())
def test_csum_replace_bytes_equals_recomputation(impl, data, wpos, nwords, fill, rnd):
    buf = _buffer_with_field(data, 1 + nwords)
    n = len(buf) // 2
    w = 1 + wpos % (n - nwords)
    a, b = 2 * w, 2 * (w + nwords)
    if fill == "zero":
        old = b"\x00" * (b - a)
        new = rnd.draw(st.sampled_from([b"\xff" * (b - a), bytes(rnd.draw(st.binary(min_size=b - a, max_size=b - a)))]))
    elif fill == "ones":
        old = b"\xff" * (b - a)
        new = rnd.draw(st.sampled_from([b"\x00" * (b - a), bytes(rnd.draw(st.binary(min_size=b - a, max_size=b - a)))]))
    else:
        old = bytes(buf[a:b])
        new = rnd.draw(st.binary(min_size=b - a, max_size=b - a))
    buf[a:b] = old
    buf[0:2] = b"\x00\x00"
    check = ref_checksum(bytes(buf))
    buf[a:b] = new
    full = ref_checksum(bytes(buf))
    got = impl.csum_replace_bytes(check, old, new)
    assert 0 <= got <= 0xFFFF
    assert equiv(got, full)
    if any(buf[2:]):
        assert got == full


@FAST
@given(impl=impls, check=st.integers(0, 0xFFFF), old=words, new=words)
def test_csum_replace2_inverse(impl, check, old, new):
    """Changing a word and changing it back restores an equivalent checksum."""
    there = impl.csum_replace2(check, old, new)
    back = impl.csum_replace2(there, new, old)
    assert equiv(back, check)


@FAST
@given(impl=impls, check=st.integers(0, 0xFFFF), old=longs, new=longs)
def test_replace4_agrees_with_replace_bytes_and_replace2(impl, check, old, new):
    a = impl.csum_replace4(check, old, new)
    b = impl.csum_replace_bytes(check, struct.pack("!I", old), struct.pack("!I", new))
    c = impl.csum_replace2(impl.csum_replace2(check, old >> 16, new >> 16), old & 0xFFFF, new & 0xFFFF)
    assert equiv(a, b) and equiv(a, c)
