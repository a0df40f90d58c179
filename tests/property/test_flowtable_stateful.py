"""A Hypothesis state machine driving ``FlowTable`` (the C one and the pure twin, each on its own) against a
plain dict model of what native/flowtab.c promises:

* insert: -1 when ``len == capacity``; -2 when the inbound key, or (with ``has_out``) the outbound key, is
  already some flow's key in either direction; otherwise the slot: the most recently freed one, else the
  next never-used one (the high-water mark grows);
* lookup from either direction: ``slot << 1 | dir``, or -1.  A flow whose outbound key equals its inbound key
  is found as outbound (the link made last);
* remove(slot): True and both keys gone, False for a free or never-used slot;
* expire(now, budget): walks ``min(budget, high-water)`` slots starting at the sweep cursor, wrapping to 0
  at the high-water mark, and removes (returning them in walk order) the used ones with ``expires <= now``.

Keys come from a small pool (3 addresses, 2 ports, 2 protocols) so duplicates and in/out collisions happen
all the time, and the capacity is 8 so the table fills.  After every step: ``len`` equals the model, every
model key looks up to its link, every other key of the pool to -1, and ``get`` agrees for every slot.
"""

from __future__ import annotations

import unittest

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pylvs import native
from pylvs._pure.flowtable import FlowTable as PureFlowTable
from pylvs.testing import ip4

CAPACITY = 8
ADDRS = [ip4("198.18.0.10"), ip4("198.18.0.100"), ip4("198.19.0.11")]
PORTS = [80, 40000]
PROTOS = [6, 17]
ENDPOINTS = [(a, p) for a in ADDRS for p in PORTS]
KEYS = [(proto, a, ap, b, bp) for proto in PROTOS for a, ap in ENDPOINTS for b, bp in ENDPOINTS]

endpoints = st.sampled_from(ENDPOINTS)
times = st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 1e9])
slots = st.integers(0, CAPACITY + 1)


class FlowTableMachine(RuleBasedStateMachine):
    """Subclasses set ``impl`` (the FlowTable class under test)."""

    impl = None

    def __init__(self) -> None:
        super().__init__()
        self.table = None
        self.flows: dict[int, dict] = {}  # slot -> the flow as inserted (expires kept current)
        self.index: dict[tuple, int] = {}  # key -> slot << 1 | dir
        self.free: list[int] = []          # a stack: the last freed is reused first
        self.hw = 0
        self.cursor = 0

    @initialize(key=st.binary(min_size=16, max_size=16))
    def make(self, key):
        self.table = self.impl(CAPACITY, key, 4)
        assert self.table.capacity == CAPACITY and self.table.key == key and len(self.table) == 0

    # ------------------------------------------------------------------ the model

    def _model_remove(self, slot: int) -> None:
        f = self.flows.pop(slot)
        for k in (f["ik"], f["ok"]):
            if self.index.get(k, -1) >> 1 == slot:
                del self.index[k]
        self.free.append(slot)

    # ------------------------------------------------------------------ rules

    @rule(proto=st.sampled_from(PROTOS), c=endpoints, v=endpoints, lo=endpoints, d=endpoints,
          mode=st.integers(0, 3), has_out=st.booleans(), expires=times)
    def insert(self, proto, c, v, lo, d, mode, has_out, expires):
        ik = (proto, c[0], c[1], v[0], v[1])
        ok = (proto, d[0], d[1], lo[0], lo[1])
        got = self.table.insert(proto, c[0], c[1], v[0], v[1], lo[0], lo[1], d[0], d[1], mode, has_out, expires)
        if len(self.flows) >= CAPACITY:
            expect = -1
        elif ik in self.index or (has_out and ok in self.index):
            expect = -2
        elif self.free:
            expect = self.free.pop()
        else:
            expect = self.hw
            self.hw += 1
        assert got == expect, f"insert {ik} / {ok if has_out else '-'}: got {got}, model {expect}"
        if expect >= 0:
            self.flows[expect] = {"ik": ik, "ok": ok if has_out else None, "has_out": has_out, "mode": mode,
                                  "expires": expires, "c": c, "v": v, "lo": lo, "d": d, "proto": proto}
            self.index[ik] = expect << 1
            if has_out:
                self.index[ok] = expect << 1 | 1  # when ok == ik this replaces the inbound link: C finds OUT first

    @rule(key=st.sampled_from(KEYS))
    def lookup(self, key):
        assert self.table.lookup(*key) == self.index.get(key, -1)

    @rule(slot=slots)
    def remove(self, slot):
        expect = slot in self.flows
        assert self.table.remove(slot) is expect
        if expect:
            self._model_remove(slot)

    @precondition(lambda self: self.flows)
    @rule(data=st.data())
    def remove_used(self, data):
        slot = data.draw(st.sampled_from(sorted(self.flows)))
        assert self.table.remove(slot) is True
        self._model_remove(slot)

    @rule(slot=slots, t=times)
    def set_expires(self, slot, t):
        if slot in self.flows:
            self.table.set_expires(slot, t)
            self.flows[slot]["expires"] = t
            assert self.table.expires(slot) == t
        else:
            try:
                self.table.set_expires(slot, t)
            except KeyError:
                pass
            else:
                raise AssertionError(f"set_expires on free slot {slot} did not raise KeyError")

    @rule(now=times, budget=st.integers(0, CAPACITY + 3) | st.just(0xFFFFFFFF))
    def expire(self, now, budget):
        got = self.table.expire(now, budget)
        expect = []
        hw = self.hw
        for _ in range(min(budget, hw)):
            slot = self.cursor
            self.cursor = 0 if slot + 1 >= hw else slot + 1
            f = self.flows.get(slot)
            if f is not None and f["expires"] <= now:
                self._model_remove(slot)
                expect.append(slot)
        assert got == expect, f"expire({now}, {budget}): got {got}, model {expect} (hw {hw})"

    @rule()
    def length(self):
        assert len(self.table) == len(self.flows)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def same_size(self):
        if self.table is not None:
            assert len(self.table) == len(self.flows)

    @invariant()
    def every_key_finds_its_flow(self):
        if self.table is None:
            return
        for key in KEYS:
            assert self.table.lookup(*key) == self.index.get(key, -1), f"lookup {key}"
        for key, link in self.index.items():  # keys from outside the pool too (none today; cheap)
            assert self.table.lookup(*key) == link

    @invariant()
    def get_agrees(self):
        if self.table is None:
            return
        for slot in range(CAPACITY + 2):
            f = self.flows.get(slot)
            if f is None:
                try:
                    self.table.get(slot)
                except KeyError:
                    continue
                raise AssertionError(f"get({slot}) of a free slot did not raise KeyError")
            g = self.table.get(slot)
            assert (g["proto"], g["caddr"], g["cport"], g["vaddr"], g["vport"]) == f["ik"]
            assert (g["laddr"], g["lport"], g["daddr"], g["dport"]) == (*f["lo"], *f["d"])
            assert bool(g["has_out"]) == f["has_out"] and g["mode"] == f["mode"]
            assert g["expires"] == f["expires"] and not g["fast"]


SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class PureFlowTableMachine(FlowTableMachine):
    impl = PureFlowTable


TestPureFlowTable = PureFlowTableMachine.TestCase
TestPureFlowTable.settings = SETTINGS


if native.available():
    from pylvs._native import FlowTable as NativeFlowTable

    class NativeFlowTableMachine(FlowTableMachine):
        impl = NativeFlowTable

    TestNativeFlowTable = NativeFlowTableMachine.TestCase
    TestNativeFlowTable.settings = SETTINGS
else:
    @unittest.skip(f"pylvs._native is not built or not importable ({native._IMPORT_ERROR})")
    class TestNativeFlowTable(unittest.TestCase):
        def test_skipped(self):  # pragma: no cover
            pass
