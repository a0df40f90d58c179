"""Hypothesis properties of pylvs.core.schedulers."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylvs.core.dest import Dest
from pylvs.core.schedulers import SCHEDULERS, make_scheduler


def mk(weights: list[int]) -> list[Dest]:
    return [Dest(bytes([198, 18, 0, i + 1]), 80, w, "nat") for i, w in enumerate(weights)]


weight_lists = st.lists(st.integers(0, 10), min_size=1, max_size=8)
addrs = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
ports = st.integers(0, 65535)


@given(weights=weight_lists, prior=st.integers(0, 200))
def test_wrr_window_gives_each_server_its_weight(weights, prior):
    dests = mk(weights)
    s = make_scheduler("wrr", dests)
    for _ in range(prior):
        s.pick(b"\x00" * 4, 0)
    window = Counter(id(s.pick(b"\x00" * 4, 0)) for _ in range(sum(weights)))
    assert window == Counter({id(d): d.weight for d in dests if d.weight})


@given(weights=weight_lists, clients=st.lists(st.tuples(addrs, ports), min_size=1, max_size=20),
       sh_port=st.booleans(), fallback=st.booleans())
def test_sh_stable_per_source(weights, clients, sh_port, fallback):
    s = make_scheduler("sh", mk(weights), sh_port=sh_port, sh_fallback=fallback)
    first = [s.pick(a, p) for a, p in clients]
    # interleave other traffic: sh has no state, the answer must not move
    for (a, p), d in zip(reversed(clients), reversed(first)):
        assert s.pick(a, p) is d
        if not sh_port:
            assert s.pick(a, (p + 1) % 65536) is d
    if any(weights):
        assert all(d is not None for d in first)


# operations applied to a live scheduler: pick, or mutate a dest and maybe update()
ops = st.lists(
    st.one_of(
        st.tuples(st.just("pick"), addrs, ports),
        st.tuples(st.just("weight"), st.integers(0, 7), st.integers(0, 10), st.booleans()),
        st.tuples(st.just("remove"), st.integers(0, 7), st.booleans(), st.booleans()),
        st.tuples(st.just("conns"), st.integers(0, 7), st.integers(0, 5), st.integers(0, 600)),
    ),
    max_size=30,
)


def _check(name, weights, flags, operations):
    dests = mk(weights)
    listed = list(dests)
    s = make_scheduler(name, listed, sh_port=flags[0], sh_fallback=flags[1])
    fresh = True  # update() called since the last mutation
    for op in operations:
        if op[0] == "pick":
            d = s.pick(op[1], op[2])
            assert d is None or (d.usable and d in dests)
            if fresh and d is None and name in ("rr", "wrr", "lc", "wlc"):
                assert not any(x.usable for x in listed)
            continue
        if not dests:
            continue
        target = dests[op[1] % len(dests)]
        if op[0] == "weight":
            target.weight, do_update = op[2], op[3]
        elif op[0] == "remove":
            target.available, do_update = op[2], op[3]
            listed = [x for x in dests if x.available]
        else:
            target.active, target.inactive, do_update = op[2], op[3], True
        if do_update:
            s.update(listed)
        fresh = do_update


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(set(SCHEDULERS) - {"mh"})),
       weights=st.lists(st.integers(0, 10), max_size=8),
       flags=st.tuples(st.booleans(), st.booleans()), operations=ops)
def test_never_unusable_never_raises(name, weights, flags, operations):
    _check(name, weights, flags, operations)


# mh rebuilds a 65537-slot table per update: fewer, slower examples
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.integers(0, 10), max_size=5),
       flags=st.tuples(st.booleans(), st.booleans()), operations=ops)
def test_mh_never_unusable_never_raises(weights, flags, operations):
    _check("mh", weights, flags, operations)
