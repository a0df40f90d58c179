"""Reading a TOML document with key-path errors: the typed accessors behind :mod:`pylvs.config`.

Every value is read through a :class:`Reader` for its table, which refuses unknown keys up front (with a
close match suggested: ``wieght`` -> ``weight``) and checks each value's type and range, so every error
names the file, the key path and what is wrong (:class:`ConfigError`).
"""

from __future__ import annotations

import difflib
import math
import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

__all__ = ["ConfigError", "IPAddress", "Reader", "REQUIRED", "check_range", "is_int", "join_path", "read_ip", "read_mac",
           "type_name"]

IPAddress = IPv4Address | IPv6Address
MAC_RE = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
#: the default of a key that must be there
REQUIRED: Any = object()


class ConfigError(Exception):
    """A configuration problem: ``file``, key ``path`` ("" = whole file), ``message``."""

    def __init__(self, file: str, path: str, message: str) -> None:
        super().__init__(str(file), path, message)  # args kept so the error pickles
        self.file = str(file)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}: {self.message}"


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(v: Any) -> str:
    """TOML's name for a Python value's type, for messages."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__  # datetime & co.


def is_int(v: Any) -> bool:
    # bool is an int subclass in Python, but `port = true` is a mistake, not 1.
    return isinstance(v, int) and not isinstance(v, bool)


class Reader:
    """One TOML table being read: refuses unknown keys up front, then hands out
    typed values; every error carries the key path."""

    __slots__ = ("file", "data", "path")

    def __init__(self, file: str, data: Any, path: str, allowed: tuple[str, ...]) -> None:
        self.file = file
        self.path = path
        if not isinstance(data, dict):
            raise ConfigError(file, path, f"expected a table, got {type_name(data)}")
        for key in data:
            if key not in allowed:
                name = str(key)
                hint = difflib.get_close_matches(name, allowed, n=1)
                did = f"did you mean {hint[0]!r}? " if hint else ""
                raise ConfigError(file, join_path(path, name),
                                  f"unknown key {name!r} ({did}allowed keys: {', '.join(allowed)})")
        self.data = data

    def at(self, key: str) -> str:
        return join_path(self.path, key)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, self.at(key), message)

    def _get(self, key: str, default: Any, what: str, ok) -> Any:
        if key not in self.data:
            if default is REQUIRED:
                raise self.error(key, f"missing required key {key!r}")
            return default
        v = self.data[key]
        if not ok(v):
            if isinstance(v, (dict, list, tuple)):
                shown = ""
            else:  # spell the value as TOML would (true, not True)
                shown = " " + (str(v).lower() if isinstance(v, bool) else repr(v))
            raise self.error(key, f"expected {what}, got {type_name(v)}{shown}")
        return v

    def int(self, key: str, default: Any = REQUIRED, lo: int | None = None,
            hi: int | None = None) -> Any:
        v = self._get(key, default, "an integer", is_int)
        if key in self.data:
            check_range(self, key, v, lo, hi)
        return v

    def num(self, key: str, default: Any = REQUIRED, *, positive: bool = False) -> Any:
        """A float; integers are accepted.  ``positive``: > 0, else >= 0."""
        v = self._get(key, default, "a number",
                      lambda x: is_int(x) or isinstance(x, float))
        if key not in self.data:
            return v
        v = float(v)
        if not math.isfinite(v):
            raise self.error(key, f"must be a finite number, got {v}")
        if positive and v <= 0:
            raise self.error(key, f"must be > 0, got {v:g}")
        if not positive and v < 0:
            raise self.error(key, f"must be >= 0, got {v:g}")
        return v

    def bool(self, key: str, default: Any = REQUIRED) -> Any:
        return self._get(key, default, "a boolean (true/false)", lambda x: isinstance(x, bool))

    def str(self, key: str, default: Any = REQUIRED, choices: tuple[str, ...] = ()) -> Any:
        v = self._get(key, default, "a string", lambda x: isinstance(x, str))
        if choices and key in self.data and v not in choices:
            raise self.error(key, f"invalid {key} {v!r} (expected one of: {', '.join(choices)})")
        return v

    def array(self, key: str, default: Any = REQUIRED) -> Any:
        return self._get(key, default, "an array", lambda x: isinstance(x, (list, tuple)))

    def tables(self, key: str) -> list[tuple[str, Any]]:
        """An array of tables (``[[key]]``) as (path, item) pairs; absent = empty."""
        v = self.data.get(key, [])
        if isinstance(v, dict):  # `[interface]` written instead of `[[interface]]`
            raise self.error(key, f"expected an array of tables ([[{self.at(key)}]]), got a single table")
        if not isinstance(v, (list, tuple)):
            raise self.error(key, f"expected an array of tables ([[{self.at(key)}]]), got {type_name(v)}")
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(v)]


def check_range(t: Reader, key: str, v: int, lo: int | None, hi: int | None) -> None:
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        if hi is None:
            raise t.error(key, f"must be >= {lo}, got {v}")
        raise t.error(key, f"{v} is out of range {lo}..{hi}")


def read_ip(file: str, path: str, value: Any) -> IPAddress:
    if not isinstance(value, str):
        raise ConfigError(file, path, f"expected an IP address string, got {type_name(value)}")
    try:
        return ip_address(value)
    except ValueError:
        raise ConfigError(file, path, f"invalid IP address {value!r}") from None


def read_mac(file: str, path: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(file, path, f"expected a MAC address string, got {type_name(value)}")
    if not MAC_RE.fullmatch(value):
        raise ConfigError(file, path,
                          f"invalid MAC address {value!r} (expected six hex pairs like 'aa:bb:cc:dd:ee:ff')")
    mac = bytes.fromhex(value.replace(":", ""))
    # The I/G bit: a group address can never be a station's own or a neighbour's MAC.
    if mac[0] & 1:
        raise ConfigError(file, path, f"{value!r} is a multicast/broadcast MAC, expected a unicast one")
    return mac
