"""A stateful Hypothesis test of pylvs.core.conntable.ConnTable against a plain dict model.

The model keeps, per connection, its two keys and its deadline, plus the set of
connections the table still holds.  Semantics modelled (the documented contract):

* ``insert`` refuses when ``len(table) >= max_size`` (checked first) or when a
  key is held by a live (not expired) flow; a flow holding the key that has
  expired is removed (and reported through ``on_expire``) on the way;
* ``lookup`` returns ``(conn, IN|OUT)`` for a live flow; an expired one is
  removed, reported, and not returned;
* ``set_expiry`` moves a deadline either way; ``expire(now)`` removes every
  flow whose deadline is ``<= now`` and reports each exactly once;
* ``remove`` removes without reporting; removing twice is a no-op.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from pylvs.core.conntable import IN, OUT, Conn, ConnTable

ADDRS = [bytes([198, 18, 0, 10]), bytes([198, 19, 0, 11])]
PORTS = [1, 2]
# Small pools so that keys of different flows collide often.
addr = st.sampled_from(ADDRS)
port = st.sampled_from(PORTS)


class ConnTableMachine(RuleBasedStateMachine):
    conns = Bundle("conns")

    @initialize(max_size=st.integers(1, 6))
    def setup(self, max_size):
        self.expired: list[Conn] = []
        self.table = ConnTable(max_size, on_expire=self.expired.append)
        self.max_size = max_size
        self.now = 0.0
        self.present: dict[int, Conn] = {}  # id -> conn, what the table should hold
        self.deadline: dict[int, float] = {}
        self.want_expired: list[Conn] = []
        self.inserted: set[int] = set()

    # ------------------------------------------------------------ model helpers

    def _holder(self, key):
        for c in self.present.values():
            if c.in_key == key:
                return c, IN
            if c.out_key is not None and c.out_key == key:
                return c, OUT
        return None

    def _model_expire(self, c: Conn) -> None:
        del self.present[id(c)]
        self.want_expired.append(c)

    def _model_lookup(self, key):
        hit = self._holder(key)
        if hit is None:
            return None
        c, d = hit
        if self.deadline[id(c)] <= self.now:
            self._model_expire(c)
            return None
        return hit

    # ------------------------------------------------------------ rules

    @rule(target=conns, proto=st.sampled_from([6, 17]), caddr=addr, cport=port, vaddr=addr, vport=port,
          laddr=addr, lport=port, daddr=addr, dport=port, mode=st.sampled_from(["nat", "fullnat", "dr", "tun"]),
          ttl=st.integers(0, 10))
    def insert(self, proto, caddr, cport, vaddr, vport, laddr, lport, daddr, dport, mode, ttl):
        c = Conn(proto, caddr, cport, vaddr, vport, laddr, lport, daddr, dport, None, None, mode)
        if c.in_key == c.out_key:
            # one flow whose two keys coincide cannot happen on the wire
            return c
        c.expires = self.now + ttl
        # model, in the order the contract states: at capacity the table first
        # sweeps flows whose deadline passed (budget 256 > any max_size here)
        if len(self.present) >= self.max_size:
            for old in [x for x in self.present.values() if self.deadline[id(x)] <= self.now]:
                self._model_expire(old)
        if len(self.present) >= self.max_size:
            want = False
        elif self._model_lookup(c.in_key) is not None:
            want = False
        elif c.out_key is not None and self._model_lookup(c.out_key) is not None:
            want = False
        else:
            want = True
        got = self.table.insert(c, self.now)
        assert got == want
        if got:
            self.inserted.add(id(c))
            self.present[id(c)] = c
            self.deadline[id(c)] = c.expires
        return c

    @rule(c=conns, by_out=st.booleans())
    def lookup_own_key(self, c, by_out):
        key = c.out_key if by_out and c.out_key is not None else c.in_key
        want = self._model_lookup(key)
        got = self.table.lookup(key, self.now)
        assert got == want

    @rule(proto=st.sampled_from([6, 17]), a=addr, p=port, b=addr, q=port)
    def lookup_any_key(self, proto, a, p, b, q):
        key = (proto, a, p, b, q)
        want = self._model_lookup(key)
        got = self.table.lookup(key, self.now)
        assert got == want
        assert self.table.taken(key, self.now) == (want is not None)

    @rule(c=conns, ttl=st.integers(0, 12))
    def set_expiry(self, c, ttl):
        if id(c) not in self.present:
            return
        self.table.set_expiry(c, self.now + ttl)
        self.deadline[id(c)] = self.now + ttl

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.0]))
    def advance(self, dt):
        self.now += dt

    @rule()
    def expire_all(self):
        due = [c for c in self.present.values() if self.deadline[id(c)] <= self.now]
        for c in due:
            self._model_expire(c)
        n = self.table.expire(self.now)
        assert n == len(due)

    @rule(budget=st.integers(0, 3))
    def expire_budget(self, budget):
        before = dict(self.present)
        n = self.table.expire(self.now, budget=budget)
        assert 0 <= n <= budget
        gone = [c for c in before.values() if not c.alive]
        assert len(gone) == n
        for c in gone:
            assert self.deadline[id(c)] <= self.now, "a flow was expired before its deadline"
            self._model_expire(c)

    @rule(c=consumes(conns))
    def remove(self, c):
        if id(c) not in self.inserted:
            # remove() is only defined for a flow the table accepted (the
            # pipeline never removes one it failed to insert)
            return
        self.table.remove(c)
        self.present.pop(id(c), None)
        self.table.remove(c)  # twice: a no-op

    # ------------------------------------------------------------ invariants

    @invariant()
    def same_contents(self):
        if not hasattr(self, "table"):
            return
        assert len(self.table) == len(self.present)
        assert {id(c) for c in self.table} == set(self.present)
        assert self.table.full == (len(self.present) >= self.max_size)
        for c in self.present.values():
            assert c.alive
            assert c.expires == self.deadline[id(c)]

    @invariant()
    def expiry_reported_once(self):
        if not hasattr(self, "table"):
            return
        # each expired flow reported exactly once (the order within one sweep is the heap's)
        assert Counter(id(c) for c in self.expired) == Counter(id(c) for c in self.want_expired)
        assert all(not c.alive for c in self.expired)

    @invariant()
    def next_deadline_not_after_any_present(self):
        if not hasattr(self, "table") or not self.present:
            return
        nd = self.table.next_deadline()
        assert nd is not None
        assert nd <= min(self.deadline[id(c)] for c in self.present.values())


ConnTableMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestConnTable = ConnTableMachine.TestCase


def test_capacity_refusal_when_full():
    """Filling to ``max_size`` refuses the next flow; removing one makes room."""
    t = ConnTable(3)
    cs = []
    for i in range(4):
        c = Conn(6, ADDRS[0], 1000 + i, ADDRS[1], 80, ADDRS[0], 1000 + i, ADDRS[1], 8080, None, None, "nat")
        c.expires = 100.0
        cs.append(c)
    assert [t.insert(c, 0.0) for c in cs] == [True, True, True, False]
    assert t.full and len(t) == 3
    assert t.lookup(cs[3].in_key, 0.0) is None
    t.remove(cs[0])
    assert not t.full
    assert t.insert(cs[3], 0.0)
    assert t.lookup(cs[3].out_key, 0.0) == (cs[3], OUT)
