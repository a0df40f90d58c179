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
