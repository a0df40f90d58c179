"""Differential tests: the C extension ``pylvs._native`` against its pure-Python twins (``pylvs._pure``).

The two must agree byte for byte (native/pylvs_native.h says so), so every property here runs the same input
through both and compares everything observable:

* the checksum functions (the unfolded sums of csum_partial/pseudo_header_sum only up to congruence mod 0xFFFF:
  they may legitimately differ), complete_checksum, and SipHash on random input (plus the SipHash-2-4 paper
  vector);
* the ``FlowTable``'s keyed hash (the same function on both sides: SipHash-1-3 of the tuple).

The fast path (random operations and batches through two ``FlowTable`` objects, against an oracle; its edges one
by one; process_until_punt) is in test_fastpath_diff.py; what both share is in native_diff_helpers.py.

Disagreements these tests found (all fixed) are pinned as regression tests at the bottom.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pylvs import native

if not native.available():
    pytest.skip(f"pylvs._native is not built or not importable ({native._IMPORT_ERROR}): "
                "nothing to compare the pure twins with", allow_module_level=True)

from native_diff_helpers import (  # noqa: E402
    ADDRS, DESC, MACS, NAT, SETTINGS, TUN, R, _u16, addrs_st, build_frame, ports_st, ref_complete, ref_csum, ref_sum,
)

from pylvs import _native as C  # noqa: E402
from pylvs._pure import checksum as PC  # noqa: E402
from pylvs._pure import flowtable as PF  # noqa: E402
from pylvs._pure import siphash as PS  # noqa: E402
from pylvs.testing import frames, ip4  # noqa: E402

# Not implementation-dependent (both are used explicitly): run in the [native] pass only (tests/conftest.py).
pytestmark = pytest.mark.once


# ====================================================================== checksums and SipHash

blobs = st.binary(max_size=300)
initials = st.sampled_from([0, 1, 0xFFFF, 0x10000, 0x1FFFE, 0xFFFFFFFF]) | st.integers(0, 1 << 48)
u16s = st.sampled_from([0, 1, 0xFF, 0x100, 0x7FFF, 0xFFFE, 0xFFFF]) | st.integers(0, 0xFFFF)
u32s = st.sampled_from([0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF)


def fold16(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@SETTINGS
@given(blobs, initials, st.sampled_from([bytes, bytearray, memoryview]))
def test_checksum_same(data, initial, kind):
    d = kind(data)
    assert C.checksum(d, initial) == PC.checksum(d, initial) == ~fold16(ref_sum(data) + initial) & 0xFFFF
    assert C.checksum(d) == PC.checksum(d) == ref_csum(data)


@SETTINGS
@given(blobs, initials)
def test_csum_partial_same_after_fold(data, initial):
    # The unfolded sums may differ (the pure twin folds and byte-swaps long runs): the same value mod 0xFFFF,
    # zero only together, and equal once folded.
    c, p = C.csum_partial(data, initial), PC.csum_partial(data, initial)
    assert C.csum_fold(c) == PC.csum_fold(p) == C.csum_fold(p) == PC.csum_fold(c)
    assert (c == 0) == (p == 0)
    assert c % 0xFFFF == p % 0xFFFF


@SETTINGS
@given(st.lists(st.binary(max_size=40).map(lambda b: b + b"\x00" * (len(b) % 2)), max_size=5))
def test_csum_partial_chains(parts):
    """Sums of even-length runs chain through ``initial`` like one sum over the concatenation."""
    for m in (C, PC):
        s = 0
        for part in parts:
            s = m.csum_partial(part, s)
        assert m.csum_fold(s) == ref_csum(b"".join(parts))


@SETTINGS
@given(st.sampled_from([0, 1, 0xFFFF, 0x10000, 0xFFFF0000, 0xFFFFFFFF, (1 << 64) - 1]) | st.integers(0, (1 << 64) - 1))
def test_csum_fold_same(s):
    assert C.csum_fold(s) == PC.csum_fold(s)


@SETTINGS
@given(st.sampled_from([4, 16]).flatmap(lambda n: st.tuples(st.binary(min_size=n, max_size=n),
                                                            st.binary(min_size=n, max_size=n))),
       st.integers(0, 255), st.integers(0, 0xFFFF) | st.integers(0, 0xFFFFFFFF))
def test_pseudo_header_sum_same(addrs, proto, length):
    src, dst = addrs
    # Unfolded sums again (built on csum_partial): congruent mod 0xFFFF, equal once folded.
    c, p = C.pseudo_header_sum(src, dst, proto, length), PC.pseudo_header_sum(src, dst, proto, length)
    assert C.csum_fold(c) == PC.csum_fold(p) == ~fold16(ref_sum(src) + ref_sum(dst) + proto + length) & 0xFFFF
    assert c % 0xFFFF == p % 0xFFFF and (c == 0) == (p == 0)


@SETTINGS
@given(u16s, u16s, u16s)
def test_csum_replace2_same(check, old, new):
    assert C.csum_replace2(check, old, new) == PC.csum_replace2(check, old, new)


@SETTINGS
@given(u16s, u32s, u32s)
def test_csum_replace4_same(check, old, new):
    assert C.csum_replace4(check, old, new) == PC.csum_replace4(check, old, new)
    # A 32-bit field is two 16-bit words.
    assert C.csum_replace4(check, old, new) == C.csum_replace2(C.csum_replace2(check, old >> 16, new >> 16),
                                                                old & 0xFFFF, new & 0xFFFF)


@SETTINGS
@given(u16s, st.integers(0, 24).flatmap(lambda n: st.tuples(st.binary(min_size=2 * n, max_size=2 * n),
                                                             st.binary(min_size=2 * n, max_size=2 * n))))
def test_csum_replace_bytes_same(check, old_new):
    old, new = old_new
    assert C.csum_replace_bytes(check, old, new) == PC.csum_replace_bytes(check, old, new)


@SETTINGS
@given(st.binary(min_size=2, max_size=80).map(lambda b: b[: len(b) & ~1]), st.data())
def test_incremental_updates_verify(data, d):
    """RFC 1624: patch a checksummed block after changing a word or a run; it still verifies (both sides)."""
    blk = bytearray(data + b"\x00\x00")  # checksum field at the end
    _u16.pack_into(blk, len(blk) - 2, ref_csum(blk))
    nwords = len(data) // 2
    i = d.draw(st.integers(0, nwords - 1))
    j = d.draw(st.integers(i, nwords))
    new = d.draw(st.binary(min_size=2 * (j - i), max_size=2 * (j - i)))
    old = bytes(blk[2 * i:2 * j])
    blk2 = bytearray(blk)
    blk2[2 * i:2 * j] = new
    if not any(blk2[:-2]):
        return  # RFC 1624 eqn. 3 gives 0x0000 for an all-zero block, which cannot verify; the full sum gives 0xFFFF
    for m in (C, PC):
        b = bytearray(blk2)
        _u16.pack_into(b, len(b) - 2, m.csum_replace_bytes(_u16.unpack_from(blk, len(blk) - 2)[0], old, new))
        assert ref_sum(b) == 0xFFFF
        if j - i >= 1:
            b = bytearray(blk)
            b[2 * i:2 * i + 2] = new[:2]
            _u16.pack_into(b, len(b) - 2, m.csum_replace2(_u16.unpack_from(blk, len(blk) - 2)[0],
                                                          _u16.unpack_from(old)[0], _u16.unpack_from(new)[0]))
            if any(b[:-2]):
                assert ref_sum(b) == 0xFFFF


@SETTINGS
@given(st.data())
def test_complete_checksum_same(d):
    f = d.draw(st.sampled_from(["tcp", "udp", "any"]).flatmap(frames), label="frame")
    f = bytearray(f)
    if f and d.draw(st.booleans()):  # scribble over the checksum field, as a CHECKSUM_PARTIAL frame has it
        at = min(len(f) - 1, d.draw(st.sampled_from([50, 40, 34 + 16, 34 + 6])))
        f[at] = d.draw(st.integers(0, 255))
    fc, fp, fr = bytearray(f), bytearray(f), bytearray(f)
    rc, rp, rr = C.complete_checksum(fc), PC.complete_checksum(fp), ref_complete(fr)
    assert (rc, fc) == (rp, fp) == (rr, fr)
    mv = bytearray(b"\xAA" * 7 + f)  # through a memoryview slice, as the fast path's callers pass it
    assert C.complete_checksum(memoryview(mv)[7:]) == rr and mv[7:] == fr


keys16 = st.binary(min_size=16, max_size=16)


@SETTINGS
@given(keys16, st.binary(max_size=100))
@example(bytes(range(16)), bytes(range(15)))
@example(bytes(16), b"")
def test_siphash_same(key, msg):
    assert C.siphash13(key, msg) == PS.siphash13(key, msg)
    assert C.siphash24(key, msg) == PS.siphash24(key, msg)
    assert 0 <= C.siphash13(key, msg) < 1 << 64


def test_siphash24_paper_vector():
    """Aumasson & Bernstein, "SipHash: a fast short-input PRF", appendix A."""
    for f in (C.siphash24, PS.siphash24):
        assert f(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


def test_siphash_bad_key_both_refuse():
    for f in (C.siphash13, C.siphash24, PS.siphash13, PS.siphash24):
        with pytest.raises(ValueError):
            f(b"short", b"x")


# ====================================================================== FlowTable: the keyed hash


@SETTINGS
@given(keys16, st.integers(0, 255), addrs_st, ports_st, addrs_st, ports_st)
def test_flowtable_hash_same(key, proto, a, ap, b, bp):
    c, p = C.FlowTable(4, key), PF.FlowTable(4, key)
    h = c.hash(proto, a, ap, b, bp)
    assert h == p.hash(proto, a, ap, b, bp)
    assert h == C.siphash13(key, bytes([proto]) + a + b + struct.pack("!HH", ap, bp))


# ====================================================================== disagreements found here (fixed since)


def _two_flows(T):
    """A TUN flow (client port 40000) and a NAT flow (client port 40001), both on the fast path."""
    t = T(8, bytes(16), 4)
    t.set_interface(0, MACS[1], ip4("198.18.0.1"), 1500)
    t.set_interface(1, MACS[2], ip4("198.19.0.1"), 1500)
    for cport, mode in ((40000, TUN), (40001, NAT)):
        s = t.insert(6, ADDRS[0], cport, ADDRS[2], 80, ADDRS[0], cport, ADDRS[3], 8080, mode, True, 1e9)
        t.set_fast(s, 0, MACS[0], 1, MACS[3], 0, 0)
    return t


def _run_both(buf: bytes, descs: list[tuple[int, int]]):
    out = []
    for T in (C.FlowTable, PF.FlowTable):
        b, d = bytearray(buf), bytearray(b"".join(DESC.pack(o, n, 0, 0, 0, 0, 0) for o, n in descs))
        r = _two_flows(T).process(b, d, len(descs), 0, 1.0)
        out.append((r, [DESC.unpack_from(d, i * DESC.size) for i in range(len(descs))], bytes(b)))
    return out


def test_overlapping_descriptors_same_frame_twice():
    """Found here: C's staged groups used to parse a frame listed twice once and rewrite it twice.  Layouts
    whose frames could see each other's edits now go one at a time in C too (fastpath.c staged_ok)."""
    f = build_frame(MACS[1], MACS[0], 6, ADDRS[0], 40000, ADDRS[2], 80, payload=b"hello")
    (rc, dc, bc), (rp, dp, bp) = _run_both(bytes(20) + f, [(20, len(f)), (20, len(f))])
    assert dp[1][2] == -1  # pure: the second pass sees the forwarded frame (rs MAC), not for us
    assert (rc, dc, bc) == (rp, dp, bp)  # C used to give (0, [(0, 79, 1, 0), (0, 79, 1, 0)])


def test_overlapping_descriptors_tun_header_over_a_later_frame():
    """Found here: a TUN header written over the next-listed frame's bytes was not seen by C's staged
    groups (that frame was validated before); now such layouts go one at a time."""
    tun = build_frame(MACS[1], MACS[0], 6, ADDRS[0], 40000, ADDRS[2], 80, payload=b"hello")
    nat = build_frame(MACS[1], MACS[0], 6, ADDRS[0], 40001, ADDRS[2], 80, payload=b"hello")
    buf = bytes(20) + nat + tun  # the TUN frame's 20 bytes of headroom are the NAT frame's tail
    (rc, dc, bc), (rp, dp, bp) = _run_both(buf, [(20 + len(nat), len(tun)), (20, len(nat))])
    assert dp[1][:4] == (20, len(nat), -1, R["malformed"])  # pure: its TCP checksum no longer verifies
    assert (rc, dc, bc) == (rp, dp, bp)  # C used to forward it with the outer IP header in its payload


def _self_colliding_flow(t) -> None:
    """caddr:cport -> vaddr:vport == daddr:dport -> laddr:lport with has_out: one key, two links."""
    a = ip4("198.18.0.10")
    slot = t.insert(6, a, 80, a, 80, a, 80, a, 80, NAT, True, 10.0)
    assert slot == 0
    assert t.lookup(6, a, 80, a, 80) == 1  # slot 0, OUT: the last link made wins (C chain head; the dict)
    assert t.remove(slot) is True
    assert len(t) == 0 and t.lookup(6, a, 80, a, 80) == -1
    assert t.insert(17, a, 1, a, 2, a, 3, a, 4, NAT, True, 10.0) == 0  # the slot went back to the free list


@pytest.mark.parametrize("table", [C.FlowTable, PF.FlowTable], ids=["C", "pure"])
def test_remove_self_colliding_flow(table):
    """Found by these tests: the pure remove() used to raise KeyError here (deleting the one shared index
    entry twice), leaving the slot off the free list; C and pylvs.core.conntable.ConnTable handle it."""
    _self_colliding_flow(table(4, bytes(16)))


def test_csum_replace_bytes_rejects_bad_lengths_on_both():
    for old, new in ((b"\x01", b"\x02"), (b"\x01\x02", b"\x03"), (b"abc", b"abd")):
        with pytest.raises(ValueError):
            C.csum_replace_bytes(0x1234, old, new)
        with pytest.raises(ValueError):
            PC.csum_replace_bytes(0x1234, old, new)


def test_out_of_range_arguments_are_refused_alike():
    """Found here: the two used to disagree on arguments out of range (C wrapped some silently)."""
    a = ip4("198.18.0.10")
    for T in (C.FlowTable, PF.FlowTable):
        t = T(4, bytes(16))
        for bad in (0, -1, 65536, 2 ** 32):
            with pytest.raises(ValueError):
                t.set_interface(0, MACS[0], a, bad)
        with pytest.raises(ValueError):
            t.expire(1.0, -1)
        for proto in (-1, 256):
            with pytest.raises(ValueError):
                t.insert(proto, a, 1, a, 2, a, 3, a, 4, NAT, True, 1.0)
            with pytest.raises(ValueError):
                t.lookup(proto, a, 1, a, 2)
        for mode in (-1, 4, 256):
            with pytest.raises(ValueError):
                t.insert(6, a, 1, a, 2, a, 3, a, 4, mode, True, 1.0)
        assert t.remove(2 ** 70) is False and t.remove(-1) is False
        slot = t.insert(6, a, 1, a, 2, a, 3, a, 4, NAT, True, 1.0)
        g = t.get(slot)
        assert g["has_out"] is True and g["fast"] is False
        with pytest.raises(TypeError):
            t.process(bytes(64), bytearray(DESC.size), 1, 0, 1.0)
    for f in (C.complete_checksum, PC.complete_checksum):
        with pytest.raises(BufferError):
            f(bytes(64))


def test_siphash13_known_answers_from_cpython():
    """A reference for SipHash-1-3 that is neither implementation: CPython hashes bytes with SipHash-1-3
    (3.11+), with an all-zero key when PYTHONHASHSEED=0."""
    import subprocess
    import sys

    msgs = [b"a", b"abc", bytes(range(7)), bytes(range(8)), bytes(range(15)), bytes(range(64))]
    code = f"import sys; print([hash(m) & (2**64 - 1) for m in {msgs!r}])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env={"PYTHONHASHSEED": "0"})
    if sys.hash_info.algorithm != "siphash13":
        pytest.skip(f"this Python hashes with {sys.hash_info.algorithm}, not SipHash-1-3")
    want = eval(r.stdout)  # a list of ints printed by the child
    assert [C.siphash13(bytes(16), m) for m in msgs] == want
    assert [PS.siphash13(bytes(16), m) for m in msgs] == want
