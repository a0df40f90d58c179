"""pylvs.core.conntable: both keys, capacity, expiry with an injected clock."""

from __future__ import annotations

from pylvs.core.conntable import IN, OUT, Conn, ConnTable
from pylvs.core.dest import Dest

C = bytes([198, 18, 0, 10])
V = bytes([198, 18, 0, 100])
R = bytes([198, 19, 0, 11])
L = bytes([198, 19, 0, 250])


def nat(cport: int = 40000, expires: float = 100.0) -> Conn:
    c = Conn(6, C, cport, V, 80, C, cport, R, 8080, None, None, "nat")
    c.expires = expires
    return c


def fullnat(cport: int, lport: int, expires: float = 100.0) -> Conn:
    c = Conn(6, C, cport, V, 80, L, lport, R, 8080, None, None, "fullnat")
    c.expires = expires
    return c


def test_keys_per_mode():
    c = nat()
    assert c.in_key == (6, C, 40000, V, 80)
    assert c.out_key == (6, R, 8080, C, 40000)
    f = fullnat(40000, 1024)
    assert f.out_key == (6, R, 8080, L, 1024)
    for mode in ("dr", "tun"):
        d = Conn(6, C, 1, V, 80, C, 1, R, 80, None, None, mode)
        assert d.out_key is None and d.no_output
    assert not c.no_output and c.state_name == "NONE"


def test_insert_and_lookup_both_directions():
    t = ConnTable(10)
    c = nat()
    assert t.insert(c, 0.0)
    assert len(t) == 1 and list(t) == [c]
    assert t.lookup(c.in_key, 1.0) == (c, IN)
    assert t.lookup(c.out_key, 1.0) == (c, OUT)
    assert t.taken(c.out_key, 1.0)
    assert t.lookup((6, C, 40001, V, 80), 1.0) is None


def test_input_only_conn_has_one_key():
    t = ConnTable(10)
    d = Conn(6, C, 1, V, 80, C, 1, R, 80, None, None, "dr")
    d.expires = 10.0
    assert t.insert(d, 0.0)
    assert t.lookup(d.in_key, 0.0) == (d, IN)
    assert t.lookup((6, R, 80, C, 1), 0.0) is None
    t.remove(d)
    assert len(t) == 0


def test_duplicate_keys_refused():
    t = ConnTable(10)
    a = fullnat(40000, 1024)
    assert t.insert(a, 0.0)
    assert not t.insert(fullnat(40000, 1025), 0.0)  # same inbound tuple
    assert not t.insert(fullnat(40001, 1024), 0.0)  # same outbound tuple
    assert t.insert(fullnat(40001, 1025), 0.0)
    assert len(t) == 2


def test_capacity():
    t = ConnTable(2)
    assert t.insert(nat(1), 0.0) and t.insert(nat(2), 0.0)
    assert t.full
    assert not t.insert(nat(3), 0.0)
    assert len(t) == 2
    # old flows keep working when full
    assert t.lookup(nat(1).in_key, 0.0)[0].cport == 1


def test_expired_flow_not_returned_and_reported_once():
    seen = []
    t = ConnTable(10, on_expire=seen.append)
    c = nat(expires=5.0)
    t.insert(c, 0.0)
    assert t.lookup(c.in_key, 4.999) == (c, IN)
    assert t.lookup(c.in_key, 5.0) is None  # a deadline equal to now has passed
    assert seen == [c] and len(t) == 0 and not c.alive
    assert t.lookup(c.out_key, 6.0) is None
    assert t.expire(10.0) == 0
    assert seen == [c]


def test_expired_key_can_be_reused():
    t = ConnTable(10)
    old = nat(expires=5.0)
    t.insert(old, 0.0)
    new = nat(expires=50.0)
    assert t.insert(new, 6.0)
    assert t.lookup(new.in_key, 6.0) == (new, IN)
    assert len(t) == 1


def test_expire_sweeps_in_time_and_respects_refresh():
    seen = []
    t = ConnTable(10, on_expire=seen.append)
    a, b, c = nat(1, 10.0), nat(2, 20.0), nat(3, 30.0)
    for x in (a, b, c):
        t.insert(x, 0.0)
    assert t.next_deadline() == 10.0
    t.set_expiry(a, 25.0)  # refreshed later: its old heap entry must not kill it
    assert t.expire(15.0) == 0 and seen == []
    assert t.expire(20.0) == 1 and seen == [b]
    t.set_expiry(c, 22.0)  # moved earlier
    assert t.expire(22.0) == 1 and seen == [b, c]
    assert t.expire(24.9) == 0
    assert t.expire(25.0) == 1 and seen == [b, c, a]
    assert len(t) == 0


def test_expire_budget():
    t = ConnTable(100)
    cs = [nat(i, 1.0) for i in range(10)]
    for c in cs:
        t.insert(c, 0.0)
    assert t.expire(2.0, budget=3) == 3
    assert len(t) == 7
    assert t.expire(2.0) == 7
    assert len(t) == 0


def test_remove_does_not_report_and_is_idempotent():
    seen = []
    t = ConnTable(10, on_expire=seen.append)
    c = nat()
    t.insert(c, 0.0)
    t.remove(c)
    t.remove(c)
    assert len(t) == 0 and seen == []
    assert t.lookup(c.in_key, 0.0) is None and t.lookup(c.out_key, 0.0) is None
    assert t.expire(1000.0) == 0 and seen == []


def test_clear_reports_everything():
    seen = []
    t = ConnTable(10, on_expire=seen.append)
    cs = [nat(i) for i in range(4)]
    for c in cs:
        t.insert(c, 0.0)
    t.clear()
    assert len(t) == 0 and sorted(c.cport for c in seen) == [0, 1, 2, 3]
    assert t.next_deadline() is None


def test_conn_holds_dest_and_counters():
    d = Dest(R, 8080, 1, "nat")
    c = Conn(17, C, 5000, V, 53, C, 5000, R, 5353, d, None, "nat")
    assert c.dest is d and c.pkts_in == c.bytes_out == 0 and not c.alive  # alive = in a table


def test_removing_a_refused_duplicate_leaves_the_original():
    t = ConnTable(10)
    a, b = nat(1), nat(1)
    assert t.insert(a, 0.0) and not t.insert(b, 0.0)
    t.remove(b)
    assert len(t) == 1 and t.lookup(a.in_key, 0.0)[0] is a


def test_a_removed_flow_can_be_inserted_again_and_removed():
    t = ConnTable(10)
    a = nat(1)
    a.expires = 50.0
    assert t.insert(a, 0.0)
    t.remove(a)
    assert t.insert(a, 0.0) and len(t) == 1
    t.remove(a)
    assert len(t) == 0


def test_full_table_sweeps_expired_flows_before_refusing():
    t = ConnTable(2)
    for p in (1, 2):
        c = nat(p)
        c.expires = 5.0
        assert t.insert(c, 0.0)
    assert not t.insert(nat(3), 1.0)
    fresh = nat(3)
    fresh.expires = 20.0
    assert t.insert(fresh, 6.0) and len(t) == 1


def test_chunks_hold_each_flow_once_and_at_most_size():
    """NAT flows have two keys, DR flows one: a chunk counts flows, not keys."""
    t = ConnTable(100)
    flows = []
    for i in range(7):
        c = nat(40000 + i) if i % 2 else Conn(6, C, 50000 + i, V, 80, C, 50000 + i, R, 80, None, None, "dr")
        c.expires = 10.0
        assert t.insert(c, 0.0)
        flows.append(c)
    chunks = list(t.chunks(3))
    assert [len(ch) for ch in chunks] == [3, 3, 1]
    assert sorted(id(c) for ch in chunks for c in ch) == sorted(id(c) for c in flows)
    it = t.chunks(3)
    first = next(it)
    t.remove(flows[-1])  # the table changes between chunks: the copy is what is walked
    assert len(first) + sum(len(ch) for ch in it) == 7
