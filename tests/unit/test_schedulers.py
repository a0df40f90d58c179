"""Unit tests for pylvs.core.schedulers: exact IPVS pick sequences."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from pylvs.core.dest import Dest
from pylvs.core.schedulers import (
    SCHEDULERS,
    MaglevHashing,
    SourceHashing,
    _addr_fold,
    _hash_32,
    _hsiphash_u32,
    make_scheduler,
)


def mk(*weights: int, base: str = "198.18.0.1") -> list[Dest]:
    """Dests A, B, C ... with consecutive addresses."""
    first = ipaddress.ip_address(base)
    return [
        Dest((first + i).packed, 80, w, "nat", label=chr(ord("A") + i))
        for i, w in enumerate(weights)
    ]


def seq(s, n: int, caddr: bytes = b"\xc6\x13\x00\x01", cport: int = 1234) -> str:
    return "".join(d.label if d else "-" for d in (s.pick(caddr, cport) for _ in range(n)))


def ip(i: int, base: str = "198.19.0.0") -> bytes:
    return (ipaddress.ip_address(base) + i).packed


# --------------------------------------------------------------------- factory

def test_registry_and_factory():
    assert set(SCHEDULERS) == {"rr", "wrr", "sh", "lc", "wlc", "mh"}
    for name, cls in SCHEDULERS.items():
        s = make_scheduler(name, mk(1, 1), sh_port=True, sh_fallback=True)
        assert isinstance(s, cls) and s.name == name
    with pytest.raises(ValueError):
        make_scheduler("nq", mk(1))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("weights", [(), (0,), (0, 0, 0)])
def test_nothing_usable_gives_none(name, weights):
    s = make_scheduler(name, mk(*weights), sh_fallback=True)
    assert s.pick(ip(1), 1) is None
    assert s.pick(b"", 0) is None


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_odd_input_never_raises(name):
    s = make_scheduler(name, mk(1, 2), sh_port=True, sh_fallback=True)
    for caddr, cport in [(b"", 0), (b"\x01", -1), (bytes(16), 70000), (bytes(7), 5)]:
        assert s.pick(caddr, cport) in s.dests


# ------------------------------------------------------------------------- rr

def test_rr_in_turn_skipping_weight_zero():
    s = make_scheduler("rr", mk(1, 0, 5, 1))
    assert seq(s, 7) == "ACDACDA"


def test_rr_removed_dest_skipped_and_cursor_kept():
    ds = mk(1, 1, 1, 1)
    s = make_scheduler("rr", ds)
    assert seq(s, 2) == "AB"
    # ip_vs_rr_del_dest: removing the cursor's server steps back to its
    # predecessor, so the next pick is the server after the removed one.
    s.update([ds[0], ds[2], ds[3]])
    assert seq(s, 3) == "CDA"
    # adding a server does not move the cursor
    s.update(ds)
    assert seq(s, 3) == "BCD"
    # not available (removed but still referenced) is never picked
    ds[1].available = False
    assert seq(s, 4) == "ACDA"


def test_rr_weight_zero_without_update_is_skipped():
    ds = mk(1, 1)
    s = make_scheduler("rr", ds)
    ds[1].weight = 0
    assert seq(s, 3) == "AAA"


# ------------------------------------------------------------------------ wrr

def test_wrr_ipvs_sequence_4_3_2():
    s = make_scheduler("wrr", mk(4, 3, 2))
    assert seq(s, 18) == "AABABCABC" * 2


def test_wrr_gcd_stepping():
    # weights 4,2: di = 2, mw = 4 - (2 - 1) = 3; cw 3 -> A, cw 1 -> A B
    s = make_scheduler("wrr", mk(4, 2))
    assert seq(s, 6) == "AABAAB"
    s = make_scheduler("wrr", mk(2, 4, 6))
    assert seq(s, 12) == "CBCABC" * 2


def test_wrr_weight_zero_never_picked():
    s = make_scheduler("wrr", mk(2, 0, 1))
    assert seq(s, 6) == "AACAAC"


def test_wrr_update_keeps_cw_and_restarts_from_head():
    ds = mk(4, 3, 2)
    s = make_scheduler("wrr", ds)
    assert seq(s, 2) == "AA"  # cw is now 3
    ds[0].weight = 1
    s.update(ds)  # ip_vs_wrr_dest_changed: mw = 3, cw stays 3, cl = head
    assert seq(s, 6) == "BBCABC"
    # all weights zero -> None, then recovers after an update
    for d in ds:
        d.weight = 0
    s.update(ds)
    assert s.pick(ip(1), 1) is None
    ds[2].weight = 2
    s.update(ds)
    assert seq(s, 3) == "CCC"


def test_wrr_window_after_update():
    ds = mk(3, 1, 2)
    s = make_scheduler("wrr", ds)
    seq(s, 4)
    ds[1].weight = 5
    s.update(ds)
    seq(s, 3)
    c = Counter(seq(s, 10))
    assert c == {"A": 3, "B": 5, "C": 2}


def test_wrr_weight_dropped_without_update_never_returns_it():
    ds = mk(3, 3)
    s = make_scheduler("wrr", ds)
    ds[0].weight = 0
    assert "A" not in seq(s, 10)
    ds[1].available = False
    assert seq(s, 3) == "---"


# --------------------------------------------------------------------- lc/wlc

def test_lc_least_overhead_first_wins_ties():
    ds = mk(1, 1, 1, 0)
    s = make_scheduler("lc", ds)
    assert s.pick(ip(1), 1) is ds[0]  # all zero -> first
    ds[0].active = 1                # 256
    ds[1].inactive = 300            # 300
    ds[2].inactive = 255            # 255
    assert s.pick(ip(1), 1) is ds[2]
    ds[2].inactive = 256            # tie with A: first in list order
    assert s.pick(ip(1), 1) is ds[0]
    ds[0].weight = 0                # quiescent -> B vs C
    assert s.pick(ip(1), 1) is ds[2]
    ds[2].available = False
    assert s.pick(ip(1), 1) is ds[1]
    # the weight-0 D with no connections is never chosen
    assert ds[3] not in {s.pick(ip(1), 1) for _ in range(3)}


def test_wlc_cross_multiplication():
    ds = mk(1, 3, 2, 0)
    s = make_scheduler("wlc", ds)
    assert s.pick(ip(1), 1) is ds[0]
    ds[0].active = 1    # 256 / 1
    ds[1].active = 2    # 512 / 3 = 170.7 -> best
    ds[2].active = 1    # 256 / 2 = 128 -> better
    assert s.pick(ip(1), 1) is ds[2]
    ds[2].active = 2    # 512 / 2 = 256 ; B 170.7
    assert s.pick(ip(1), 1) is ds[1]
    ds[1].active = 3    # 768 / 3 = 256: three-way tie -> first (A)
    assert s.pick(ip(1), 1) is ds[0]
    ds[0].inactive = 1  # A 257 -> B (first of the remaining tie)
    assert s.pick(ip(1), 1) is ds[1]


def test_wlc_skips_unusable_even_with_no_connections():
    ds = mk(0, 1)
    ds[1].active = 1000
    s = make_scheduler("wlc", ds)
    assert s.pick(ip(1), 1) is ds[1]


# ------------------------------------------------------------------------- sh

def test_hash_32_matches_kernel():
    # hash_32(val, bits) = (val * 0x61C88647 mod 2^32) >> (32 - bits)
    assert _hash_32(1, 8) == 0x61
    assert _hash_32(0, 8) == 0
    assert _hash_32(2, 32) == (2 * 0x61C88647) & 0xFFFFFFFF


def test_addr_fold():
    assert _addr_fold(bytes([10, 0, 0, 1])) == 0x0A000001
    v6 = ipaddress.ip_address("2001:db8::1").packed
    assert _addr_fold(v6) == 0x20010DB8 ^ 0 ^ 0 ^ 1


def test_sh_table_layout_follows_weights():
    ds = mk(1, 2, 0, 3)
    s = SourceHashing(ds)
    table = "".join(d.label for d in s._table)
    assert len(table) == 256
    assert table.startswith("ABBDDDABBDDD")  # weight-0 C skipped
    # 42 full rounds of 6 buckets, then A B B D
    assert Counter(table) == {"A": 43, "B": 86, "D": 127}


def test_sh_bucket_is_hash_of_address():
    ds = mk(1, 1)
    s = SourceHashing(ds)
    # 0.0.0.1 -> hash_32(1, 8) = 0x61 = 97 -> odd bucket -> B
    assert s.pick(bytes([0, 0, 0, 1]), 999) is ds[1]
    assert s.pick(bytes(4), 999) is ds[0]  # bucket 0


def test_sh_stable_per_source_and_port_flag():
    ds = mk(1, 1, 1, 1)
    s = make_scheduler("sh", ds)
    first = {i: s.pick(ip(i), 1000) for i in range(200)}
    assert all(s.pick(ip(i), 2000 + i) is first[i] for i in range(200))
    assert len(set(map(id, first.values()))) == 4
    sp = make_scheduler("sh", ds, sh_port=True)
    # with sh-port, the same address spreads over servers by source port
    assert len({id(sp.pick(ip(7), p)) for p in range(1024, 1124)}) == 4
    assert all(sp.pick(ip(7), p) is sp.pick(ip(7), p) for p in range(1024, 1124))


def test_sh_ipv6():
    ds = [Dest(ipaddress.ip_address(f"2001:db8::{i}").packed, 80, 1, "nat") for i in (1, 2)]
    s = make_scheduler("sh", ds)
    c = ipaddress.ip_address("2001:db8:1::5").packed
    assert s.pick(c, 1) is s.pick(c, 2) is not None


def test_sh_unavailable_bucket_without_and_with_fallback():
    ds = mk(1, 1, 1)
    plain = make_scheduler("sh", ds)
    fb = make_scheduler("sh", ds, sh_fallback=True)
    clients = [ip(i) for i in range(300)]
    before = {c: plain.pick(c, 0) for c in clients}
    ds[1].weight = 0  # quiesced, table not rebuilt yet
    for c in clients:
        if before[c] is ds[1]:
            assert plain.pick(c, 0) is None
            alt = fb.pick(c, 0)
            assert alt is not None and alt is not ds[1]
            assert fb.pick(c, 0) is alt  # deterministic probe order
        else:
            assert plain.pick(c, 0) is before[c] is fb.pick(c, 0)
    # after update() the table is rebuilt without the weight-0 server
    plain.update(ds)
    assert all(plain.pick(c, 0) in (ds[0], ds[2]) for c in clients)


def test_sh_fallback_probe_order_is_ipvs():
    ds = mk(1, 1)
    s = SourceHashing(ds, sh_fallback=True)
    c = bytes([0, 0, 0, 1])  # ihash 97 -> B
    ds[1].available = False
    # IPVS probes (offset + 2*ihash) & 255 for offset = 0.. : 194 (even) -> A
    assert s.pick(c, 0) is ds[0]
    ds[0].available = False
    assert s.pick(c, 0) is None


# ------------------------------------------------------------------------- mh

def test_halfsiphash_reference_vector():
    # HalfSipHash-2-4 reference vector: key 00..07, message 00 01 02 03
    assert _hsiphash_u32(0x03020100, 0x03020100, 0x07060504, 2, 4) == 0x89466E2A
    # the 1-3 variant used by ip_vs_mh is deterministic (pinned)
    assert _hsiphash_u32(0, 2654435761, 2654435761) == _hsiphash_u32(0, 2654435761, 2654435761)


def test_mh_table_proportional_to_weights():
    ds = mk(1, 2, 3, 0)
    s = MaglevHashing(ds)
    assert len(s._table) == 65537
    c = Counter(d.label for d in s._table)
    assert set(c) == {"A", "B", "C"}
    for label, w in zip("ABC", (1, 2, 3)):
        assert abs(c[label] / 65537 - w / 6) < 0.01
    picks = Counter(s.pick(ip(i), 0).label for i in range(3000))
    for label, w in zip("ABC", (1, 2, 3)):
        assert abs(picks[label] / 3000 - w / 6) < 0.05


def test_mh_weights_scaled_by_gcd():
    a = Counter(d.label for d in MaglevHashing(mk(10, 20))._table)
    b = Counter(d.label for d in MaglevHashing(mk(1, 2))._table)
    assert a == b


def test_mh_minimal_disruption_on_removal():
    ds = mk(1, 1, 1, 1, 1)
    s = make_scheduler("mh", ds)
    clients = [ip(i) for i in range(3000)]
    before = {c: s.pick(c, 0) for c in clients}
    assert len({id(d) for d in before.values()}) == 5
    s.update(ds[:2] + ds[3:])
    after = {c: s.pick(c, 0) for c in clients}
    kept = [c for c in clients if before[c] is not ds[2]]
    same = sum(after[c] is before[c] for c in kept)
    assert same / len(kept) > 0.95
    assert all(after[c] is not None and after[c] is not ds[2] for c in clients)


def test_mh_quiesce_keeps_table_and_fallback():
    ds = mk(1, 1, 1)
    s = make_scheduler("mh", ds)
    fb = make_scheduler("mh", ds, sh_fallback=True)
    clients = [ip(i) for i in range(500)]
    before = {c: s.pick(c, 0) for c in clients}
    table = s._table
    ds[0].weight = 0
    s.update(ds)
    fb.update(ds)
    assert s._table is table  # last_weight kept: no rebuild (IPVS behaviour)
    for c in clients:
        if before[c] is ds[0]:
            assert s.pick(c, 0) is None
            assert fb.pick(c, 0) in (ds[1], ds[2])
        else:
            assert s.pick(c, 0) is before[c] is fb.pick(c, 0)
    ds[0].weight = 1
    s.update(ds)
    assert all(s.pick(c, 0) is before[c] for c in clients)


def test_mh_added_with_weight_zero_not_in_table():
    ds = mk(1, 0)
    s = make_scheduler("mh", ds, sh_fallback=True)
    assert {d.label for d in s._table} == {"A"}
    ds[0].weight = 0
    s.update(ds)
    assert s.pick(ip(3), 0) is None  # fast path: nothing usable in the table


def test_mh_port_flag_and_stability():
    ds = mk(1, 1, 1)
    s = make_scheduler("mh", ds)
    assert all(s.pick(ip(9), p) is s.pick(ip(9), 0) for p in range(50))
    sp = make_scheduler("mh", ds, sh_port=True)
    assert len({id(sp.pick(ip(9), p)) for p in range(50)}) == 3


def test_mh_build_is_fast():
    import time

    t = time.perf_counter()
    MaglevHashing(mk(1, 1, 1))
    assert time.perf_counter() - t < 1.0
