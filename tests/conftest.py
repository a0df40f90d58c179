import os

from hypothesis import HealthCheck, settings

# CI runs derandomized so a red run can be reproduced; locally, explore.
settings.register_profile("ci", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


import logging  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_pylvs_logger():
    """`pylvs.cli.main` configures the "pylvs" logger for a process (its own handler, no propagation);
    tests call it in-process, so put the logger back afterwards or caplog in later tests sees nothing."""
    log = logging.getLogger("pylvs")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


from pylvs import native  # noqa: E402


IMPLS = ["native", "pure"]


def pytest_generate_tests(metafunc):
    # Every test function runs once per implementation (ids [native] / [pure]).  unittest-style classes
    # (Hypothesis state machines) are not parametrised by pytest: those name their implementation.
    if "pylvs_impl" not in metafunc.fixturenames:
        metafunc.fixturenames.append("pylvs_impl")
    metafunc.parametrize("pylvs_impl", IMPLS, indirect=True)


@pytest.fixture
def pylvs_impl(request, monkeypatch):
    """The implementation of the hot paths this test runs on: the C extension or its pure twins.

    ``native.use`` rebinds the functions the core calls and the FlowTable a new Director builds;
    ``PYLVS_NO_NATIVE`` makes the processes a test starts (pylvs run, the demo) follow suit."""
    name = request.param
    if name == "native" and not native.available():
        if os.environ.get("PYLVS_REQUIRE_NATIVE") == "1":
            pytest.fail("PYLVS_REQUIRE_NATIVE=1 but pylvs._native is not built")
        pytest.skip("pylvs._native is not built here (no C compiler at install time); the pure run covers it")
    saved = native.IMPLEMENTATION, native.REASON
    native.use(name)
    monkeypatch.setenv("PYLVS_NO_NATIVE", "1" if name == "pure" else "0")
    yield name
    native.use(*saved)


def pytest_configure(config):
    config.addinivalue_line("markers", "once: not implementation-dependent; run in the [native] pass only")


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and cs.params.get("pylvs_impl") == "pure" and item.get_closest_marker("once"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
