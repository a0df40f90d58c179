"""``ctl conns`` over the real socket: a large table comes back in chunks with the event loop (the datapath)
running between them, while the table changes, and ``ctlcli.request`` joins the chunks into one answer."""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import tomllib

import pytest

from pylvs.config import parse_config
from pylvs.control import ctlcli, plane
from pylvs.control.plane import ControlPlane
from pylvs.core.pipeline import Director, Send
from pylvs.testing import tcp_frame

pytestmark = pytest.mark.once

ROOT = pathlib.Path(__file__).resolve().parents[2]
C, D0 = "02:00:00:00:00:10", "02:00:00:00:01:01"
N = 5000


def syn(i: int) -> bytes:
    return tcp_frame(C, D0, f"198.18.{1 + i // 60000}.{10 + i % 200}", "198.18.0.100", 1024 + i % 60000, 80, 0x02)


def run(monkeypatch, reqs: list[dict]) -> tuple[list[dict], list[str]]:
    """Start the ctl socket, fill the table with N half-open flows, then send ``reqs`` one after the other
    (from a thread, as the CLI would) while a 'datapath' task keeps adding flows on the loop; returns the
    answers and the order in which rows were made ("r") and datapath turns ran ("t").  Bounded: N + 1000
    flows, each request within ctlcli's 10 s timeout."""
    monkeypatch.setattr(plane, "CONNS_CHUNK", 400)
    trace: list[str] = []
    view = plane.conn_view

    def traced_view(*a):
        trace.append("r")
        return view(*a)

    monkeypatch.setattr(plane, "conn_view", traced_view)
    # examples/nat.toml without its health checks: nothing here may send to the lab's addresses outside a
    # namespace of its own
    doc = tomllib.loads((ROOT / "examples" / "nat.toml").read_text())
    for vs in doc["virtual_server"]:
        vs.pop("health_check", None)
    d = Director(parse_config(doc, "nat.toml without health checks"))
    assert not any(vs.health_check or any(rs.health_check for rs in vs.real_servers)
                   for vs in d.config.virtual_servers)
    for i in range(N):
        assert [type(a) for a in d.handle(syn(i), "eth0", 1.0)] == [Send]
    answers = []

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cp = ControlPlane(d, config_path=None, ctl_socket=f"{tmp}/ctl.sock", metrics="", clock=lambda: 2.0)
            await cp.start()
            try:
                ticks = 0
                for req in reqs:
                    fut = asyncio.get_running_loop().run_in_executor(None, ctlcli.request, cp.ctl_socket, req, 10.0)
                    while not fut.done():  # the datapath: a turn of the loop, the first 1000 adding a flow each
                        if ticks < 1000:
                            d.handle(syn(N + ticks), "eth0", 1.5)
                        trace.append("t")
                        ticks += 1
                        await asyncio.sleep(0)
                    answers.append(await fut)
            finally:
                await cp.close()

    asyncio.run(main())
    return answers, trace


def test_conns_come_in_chunks_with_the_datapath_running_between(monkeypatch):
    (full,), trace = run(monkeypatch, [{"cmd": "conns"}])
    assert full["ok"] is True and "more" not in full
    clients = [r["client"] for r in full["result"]]
    assert len(set(clients)) == len(clients)  # each flow once
    # every flow there before the request is in the answer (ones added during it may be too)
    assert {f"198.18.{1 + i // 60000}.{10 + i % 200}:{1024 + i % 60000}" for i in range(N)} <= set(clients)
    assert all(r["state"] == "SYN_RECV" and r["expires"] > 0 for r in full["result"])
    # the loop ran between the chunks: never more than 400 rows made without a datapath turn
    runs = "".join(trace).split("t")
    assert sum(map(len, runs)) == len(clients) and max(map(len, runs)) <= 400
    assert len([r for r in runs if r]) >= N // 400


def test_conns_limit(monkeypatch):
    (limited, none, bad), _ = run(monkeypatch, [{"cmd": "conns", "limit": 1234}, {"cmd": "conns", "limit": 0},
                                                {"cmd": "conns", "limit": "x"}])
    assert limited["ok"] is True and len(limited["result"]) == 1234
    assert none == {"ok": True, "result": []}
    assert bad["ok"] is True and len(bad["result"]) >= N  # not a number: no limit, as handle() does


def test_other_commands_stay_one_line(monkeypatch):
    (ping, bad), _ = run(monkeypatch, [{"cmd": "ping"}, {"cmd": "nope"}])
    assert ping == {"ok": True, "result": "pong"}
    assert bad["ok"] is False and "unknown command" in bad["error"]
