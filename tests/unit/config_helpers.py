"""Shared by tests/unit/test_config*.py: minimal config texts, and helpers that load them and return the
ConfigError (checking how it prints)."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from pylvs.config import ConfigError, load_config, parse_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

IFACES = """
[[interface]]
name = "eth0"
mac = "02:00:00:00:01:01"
addresses = ["198.18.0.1/24"]

[[interface]]
name = "eth1"
mac = "02:00:00:00:01:02"
addresses = ["198.19.0.1/24"]
"""

VS = """
[[virtual_server]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
"""

RS = """
  [[virtual_server.real_server]]
  address = "198.19.0.11"
"""


def write(tmp_path: Path, text: str, name: str = "lb.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load_error(tmp_path: Path, text: str, mode_override: str | None = None) -> ConfigError:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p, mode_override=mode_override)
    err = ei.value
    assert err.file == str(p)
    if err.path:
        assert str(err) == f"{p}: {err.path}: {err.message}"
    else:
        assert str(err) == f"{p}: {err.message}"
    return err


def base_dict() -> dict:
    return tomllib.loads(IFACES + VS + RS)


def dict_error(data: dict, mode_override: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        parse_config(data, "t.toml", mode_override)
    return ei.value
