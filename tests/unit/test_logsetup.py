"""`--log-format json`: one parseable object per line, with the level, logger, message and extras."""

from __future__ import annotations

import io
import json
import logging

from pylvs.logsetup import JsonFormatter, setup_logging


def test_json_lines_carry_message_and_extras():
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(JsonFormatter())
    log = logging.getLogger("pylvs.test-json")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("port %s: %d frames", "eth0", 3, extra={"port": "eth0"})
        log.debug("not shown")
    finally:
        log.removeHandler(h)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert obj["level"] == "info" and obj["logger"] == "pylvs.test-json"
    assert obj["msg"] == "port eth0: 3 frames" and obj["port"] == "eth0"
    assert obj["ts"].endswith("Z")


def test_setup_logging_picks_the_format():
    setup_logging("warning", "json")
    root = logging.getLogger("pylvs")
    assert isinstance(root.handlers[0].formatter, JsonFormatter) and root.level == logging.WARNING
    setup_logging("info", "text")
    assert not isinstance(root.handlers[0].formatter, JsonFormatter) and root.level == logging.INFO
