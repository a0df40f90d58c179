"""Logging for the CLI: plain text for people, one JSON object per line for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
import time

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <extra fields>}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD and k not in out:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("pylvs: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("pylvs")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RateLimited:
    """Per-packet trouble logged at most once per ``interval`` seconds, with how many were held back
    (a flood of bad frames must not become a flood of log lines)."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.log = logger
        self.interval = interval
        self._last = float("-inf")
        self._held = 0

    def error(self, now: float, msg: str, *args) -> bool:
        if now - self._last < self.interval:
            self._held += 1
            return False
        if self._held:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, self._held, now - self._last)
        self._last, self._held = now, 0
        self.log.error(msg, *args)
        return True
