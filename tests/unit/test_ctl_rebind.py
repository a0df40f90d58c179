"""A reload that moves ``[control]``: the ctl socket and the metrics endpoint follow it (the new one bound before
the old one closes), a path that cannot be bound leaves the old one in place, and what the command line set
stays over reloads.  Real sockets: a Unix socket in a temporary folder and a metrics port on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import tempfile
import tomllib

import pytest

from pylvs.config import parse_config
from pylvs.control import ctlcli
from pylvs.control.document import dumps
from pylvs.control.plane import ControlPlane
from pylvs.core.pipeline import Director

pytestmark = pytest.mark.once

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _doc(sock: str, metrics: str) -> dict:
    """examples/nat.toml without health checks (nothing may reach the lab's addresses from here)."""
    doc = tomllib.loads((ROOT / "examples" / "nat.toml").read_text())
    for vs in doc["virtual_server"]:
        vs.pop("health_check", None)
    doc["control"] = {"socket": sock, "metrics": metrics}
    return doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _ask(path: str, req: dict) -> dict:
    return await asyncio.get_running_loop().run_in_executor(None, ctlcli.request, path, req, 5.0)


async def _metrics_up(port: int) -> bool:
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.write(b"GET /metrics HTTP/1.0\r\n\r\n")
    body = await asyncio.wait_for(r.read(), 5.0)
    w.close()
    return body.startswith(b"HTTP/1.") and b"pylvs_conn_table_entries" in body


async def _settle(cp: ControlPlane) -> None:
    if cp._rebinding is not None:
        await asyncio.wait_for(asyncio.gather(cp._rebinding), 5.0)


def test_reload_moves_the_ctl_socket_and_metrics():
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            a, b, c = f"{tmp}/a.sock", f"{tmp}/b.sock", f"{tmp}/not-a-socket"
            pathlib.Path(c).write_text("a regular file")
            cfg = pathlib.Path(tmp, "lb.toml")
            cfg.write_text(dumps(_doc(a, "")))
            d = Director(parse_config(_doc(a, ""), str(cfg)))
            cp = ControlPlane(d, config_path=str(cfg))
            await cp.start()
            try:
                assert (await _ask(a, {"cmd": "ping"}))["result"] == "pong"
                port = _free_port()
                cfg.write_text(dumps(_doc(b, f"127.0.0.1:{port}")))
                ans = await _ask(a, {"cmd": "reload"})
                assert ans["ok"] is True
                assert f"control socket moving: {a} -> {b}" in ans["changes"]
                assert f"metrics moving: off -> 127.0.0.1:{port}" in ans["changes"]
                await _settle(cp)
                assert (await _ask(b, {"cmd": "ping"}))["result"] == "pong"
                assert not os.path.exists(a) and cp.ctl_socket == b
                assert await _metrics_up(port)
                # the same file again: nothing moves
                ans = await _ask(b, {"cmd": "reload"})
                assert ans["ok"] is True and not any("control socket" in x or "metrics" in x for x in ans["changes"])
                # a path that cannot be a socket: the reload applies, the socket stays where it was
                cfg.write_text(dumps(_doc(c, "")))
                assert (await _ask(b, {"cmd": "reload"}))["ok"] is True
                await _settle(cp)
                assert cp.ctl_socket == b and (await _ask(b, {"cmd": "ping"}))["result"] == "pong"
                assert pathlib.Path(c).read_text() == "a regular file"
                assert not await _metrics_up(port)  # metrics did move: to "off"
            finally:
                await cp.close()
            assert not os.path.exists(b)

    asyncio.run(main())


def test_the_command_lines_socket_stays_over_reloads():
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            a, b, cli = f"{tmp}/a.sock", f"{tmp}/b.sock", f"{tmp}/cli.sock"
            cfg = pathlib.Path(tmp, "lb.toml")
            cfg.write_text(dumps(_doc(a, "")))
            d = Director(parse_config(_doc(a, ""), str(cfg)))
            cp = ControlPlane(d, config_path=str(cfg), ctl_socket=cli)
            await cp.start()
            try:
                cfg.write_text(dumps(_doc(b, "")))
                ans = await _ask(cli, {"cmd": "reload"})
                assert ans["ok"] is True and not any("control socket" in x for x in ans["changes"])
                await _settle(cp)
                assert cp.ctl_socket == cli and not os.path.exists(a) and not os.path.exists(b)
                assert (await _ask(cli, {"cmd": "ping"}))["result"] == "pong"
            finally:
                await cp.close()

    asyncio.run(main())
