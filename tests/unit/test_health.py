"""Health checks: the rise/fall table, each checker against real servers on 127.0.0.1, the monitor.

Every server is started inside the test on an ephemeral port and every wait is bounded; the checkers
run on both the stdlib loop and uvloop (the live runner uses uvloop when installed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from dataclasses import replace

import pytest

from pylvs.config import HealthCheck
from pylvs.control import health
from pylvs.control.health import CHECKERS, HealthMonitor, HealthState, Target

pytestmark = pytest.mark.once

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop"))]
SH = "/bin/sh"


def run(coro, loop: str = "asyncio", bound: float = 5.0):
    """Run ``coro`` on a fresh loop of the named kind, bounded so a bug cannot hang the suite."""
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(asyncio.wait_for(coro, bound))


def hc(type_="tcp", **kw) -> HealthCheck:
    kw.setdefault("interval", 0.05)
    kw.setdefault("timeout", 0.3)
    return HealthCheck(type=type_, **kw)


def free_port(kind=socket.SOCK_STREAM) -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def tcp_server(handler=None, port: int = 0):
    async def default(reader, writer):
        await reader.read()  # until the checker closes
        writer.close()
    server = await asyncio.start_server(handler or default, "127.0.0.1", port)
    return server, server.sockets[0].getsockname()[1]


async def http_server(response: bytes, seen: list | None = None):
    async def handle(reader, writer):
        req = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(req)
        writer.write(response)
        await writer.drain()
        writer.close()
    return await tcp_server(handle)


def http_response(status: int, body: bytes = b"") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


# --- HealthState ---------------------------------------------------------------------------------------

def feed(st: HealthState, results: str) -> list:
    return [st.record(c == "+", "boom" if c == "-" else "") for c in results]


def test_state_starts_up_and_falls_after_exactly_fall_failures():
    st = HealthState(rise=2, fall=3)
    assert st.up
    assert feed(st, "--") == [None, None] and st.up
    assert feed(st, "-") == [False] and not st.up
    assert (st.checks, st.failures, st.transitions, st.last_error) == (3, 3, 1, "boom")
    assert feed(st, "----") == [None] * 4  # already down: no repeated transitions


def test_state_rises_after_exactly_rise_successes():
    st = HealthState(rise=2, fall=1)
    assert feed(st, "-") == [False]
    assert feed(st, "+") == [None] and not st.up
    assert feed(st, "+") == [True] and st.up
    assert feed(st, "+++") == [None] * 3
    assert st.transitions == 2 and st.checks == 6 and st.failures == 1


@pytest.mark.parametrize("up, results, expect_up, transitions", [
    (True, "--+--", True, 0),     # a success while up resets the failure streak
    (True, "--+---", False, 1),
    (False, "+-+", False, 0),     # a failure while down resets the success streak
    (False, "+-++", True, 1),
    (True, "+++++", True, 0),
    (False, "-----", False, 0),
])
def test_state_flaps_reset_the_streak(up, results, expect_up, transitions):
    st = HealthState(rise=2, fall=3, up=up)
    feed(st, results)
    assert (st.up, st.transitions) == (expect_up, transitions)


def test_state_rise_fall_of_one_flip_on_every_change():
    st = HealthState(rise=1, fall=1)
    assert feed(st, "-+-+") == [False, True, False, True]


# --- checkers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loop", LOOPS)
def test_tcp_up_and_refused(loop):
    async def main():
        server, port = await tcp_server()
        async with server:
            assert await health.check_tcp("127.0.0.1", port, hc()) == (True, "connected")
        ok, why = await health.check_tcp("127.0.0.1", free_port(), hc())
        assert not ok and "refused" in why.lower()
    run(main(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_http_status_and_body(loop):
    async def main():
        seen = []
        server, port = await http_server(http_response(200, b"all is OK here"), seen)
        async with server:
            assert (await health.check_http("127.0.0.1", port, hc("http", path="/health")))[0]
            assert seen[0].startswith(b"GET /health HTTP/1.0\r\n")
            assert f"Host: 127.0.0.1:{port}\r\n".encode() in seen[0] and b"Connection: close" in seen[0]
            assert (await health.check_http("127.0.0.1", port, hc("http", body="is OK")))[0]
            ok, why = await health.check_http("127.0.0.1", port, hc("http", body="nope"))
            assert not ok and "nope" in why
            ok, why = await health.check_http("127.0.0.1", port, hc("http", status=(300, 399)))
            assert (ok, why) == (False, "status 200")
            await health.check_http("127.0.0.1", port, hc("http", host="www.example"))
            assert b"Host: www.example\r\n" in seen[-1]
        server, port = await http_server(http_response(503, b"down"))
        async with server:
            assert await health.check_http("127.0.0.1", port, hc("http")) == (False, "status 503")
            assert (await health.check_http("127.0.0.1", port, hc("http", status=(500, 503))))[0]
        server, port = await http_server(http_response(204))
        async with server:  # an empty body contains the empty string
            assert await health.check_http("127.0.0.1", port, hc("http", body="")) == (
                True, "status 204, body matched")
    run(main(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_http_garbage_refused_and_silent_server(loop):
    async def main():
        server, port = await http_server(b"SSH-2.0-OpenSSH\r\n")
        async with server:
            ok, why = await health.check_http("127.0.0.1", port, hc("http"))
            assert not ok and "bad status line" in why
        assert not (await health.check_http("127.0.0.1", free_port(), hc("http")))[0]
        server, port = await tcp_server()  # accepts, reads, never answers
        async with server:
            t0 = time.monotonic()
            assert await health.check_http("127.0.0.1", port, hc("http", timeout=0.2)) == (False, "timeout")
            assert time.monotonic() - t0 < 1.0
    run(main(), loop)


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(b"pong " + data, addr)


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_echo_mismatch_and_refused(loop):
    async def main():
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Echo, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            assert (await health.check_udp("127.0.0.1", port, hc("udp", send="ping", expect="pong ping")))[0]
            assert (await health.check_udp("127.0.0.1", port, hc("udp", send="x")))[0]  # expect "": any
            # An empty probe is sent too (asyncio's transport.sendto would silently drop it).
            assert (await health.check_udp("127.0.0.1", port, hc("udp", expect="pong")))[0]
            ok, why = await health.check_udp("127.0.0.1", port, hc("udp", send="ping", expect="PONG"))
            assert not ok and "PONG" in why
        finally:
            transport.close()
        for payload in ("", "ping"):
            t0 = time.monotonic()
            ok, why = await health.check_udp("127.0.0.1", free_port(socket.SOCK_DGRAM),
                                             hc("udp", send=payload, timeout=2.0))
            assert (ok, why) == (False, "Connection refused")
            assert time.monotonic() - t0 < 1.0  # the ICMP port unreachable, not the 2 s timeout
    run(main(), loop)


def test_udp_silent_server_times_out():
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # bound, never answers
            sink.bind(("127.0.0.1", 0))
            ok, why = await health.check_udp("127.0.0.1", sink.getsockname()[1], hc("udp", timeout=0.2))
        assert (ok, why) == (False, "timeout")
    run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_exec_exit_status_substitution_and_env(loop):
    async def main():
        assert await health.check_exec("127.0.0.1", 80, hc("exec", command=("true",))) == (True, "exit 0")
        assert await health.check_exec("127.0.0.1", 80, hc("exec", command=("false",))) == (False, "exit 1")
        cmd = (SH, "-c", 'test "$0" = 127.0.0.1 && test "$1" = 4242 && test "$2" = "{x}"',
               "{address}", "{port}", "{x}")
        assert (await health.check_exec("127.0.0.1", 4242, hc("exec", command=cmd)))[0]
        assert not (await health.check_exec("127.0.0.2", 4242, hc("exec", command=cmd)))[0]
        env = (SH, "-c", 'test "$PYLVS_RS_ADDRESS:$PYLVS_RS_PORT" = 10.0.0.1:81')
        assert (await health.check_exec("10.0.0.1", 81, hc("exec", command=env)))[0]
        ok, why = await health.check_exec("127.0.0.1", 80, hc("exec", command=("/nonexistent/check",)))
        assert not ok and "/nonexistent/check" in why
    run(main(), loop)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # dead, maybe not reaped by init
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("loop", LOOPS)
def test_exec_timeout_kills_the_process_group(loop, tmp_path):
    pidfile = tmp_path / "pid"

    async def main():
        # The shell's child (sleep) must die too: the whole session's process group is killed.
        cmd = (SH, "-c", f"sleep 5 & echo $! > {pidfile}; wait")
        t0 = time.monotonic()
        ok, why = await health.check_exec("127.0.0.1", 80, hc("exec", command=cmd, timeout=0.3))
        assert time.monotonic() - t0 < 1.5
        assert not ok and "timeout" in why
        pid = int(pidfile.read_text())
        for _ in range(100):
            if _gone(pid):
                break
            await asyncio.sleep(0.02)
        assert _gone(pid)
    run(main(), loop)


def test_checkers_never_raise_on_nonsense():
    async def main():
        for kind in CHECKERS:
            ok, why = await CHECKERS[kind]("not an address", 1, hc(kind, command=("true",) if kind == "exec"
                                                                   else ()))
            assert isinstance(ok, bool) and isinstance(why, str)
        assert not (await health.check_tcp("127.0.0.1", 70000, hc()))[0]  # bad port: OverflowError
    run(main())


# --- HealthMonitor -------------------------------------------------------------------------------------

class Changes:
    def __init__(self):
        self.seen: list[tuple[Target, bool, str]] = []
        self.event = asyncio.Event()

    def __call__(self, target, up, reason):
        self.seen.append((target, up, reason))
        self.event.set()

    async def next(self, bound: float = 3.0):
        await asyncio.wait_for(self.event.wait(), bound)
        self.event.clear()
        return self.seen[-1]


async def until(cond, bound: float = 3.0):
    deadline = time.monotonic() + bound
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


SVC = "TCP 198.18.0.100:80"


def test_monitor_down_on_close_and_up_on_reopen(caplog):
    log = logging.getLogger("test_health.monitor")

    async def main():
        changes = Changes()
        server, port = await tcp_server()
        target = Target(SVC, "127.0.0.1", port, hc(rise=2, fall=3, timeout=0.2))
        mon = HealthMonitor(changes, log=log)
        mon.sync([target])
        assert mon.up(SVC, "127.0.0.1", port) is True
        await until(lambda: mon.states()[target.key].checks >= 3)
        assert not changes.seen and mon.up(SVC, "127.0.0.1", port)

        server.close()
        await server.wait_closed()
        t0 = time.monotonic()
        assert await changes.next() == (target, False, "Connection refused")
        assert time.monotonic() - t0 < 3 * 0.05 + 0.5  # fall x interval, plus slack
        st = mon.states()[target.key]
        assert (st.up, st.fail_streak, st.last_error) == (False, 3, "Connection refused")

        server, _ = await tcp_server(port=port)
        async with server:
            t, up, _ = await changes.next()
            assert (t, up) == (target, True) and st.ok_streak == 2 and st.transitions == 2
        await mon.close()
        return port
    with caplog.at_level(logging.INFO, logger=log.name):
        port = run(main())
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert (logging.WARNING,
            f"{SVC} -> 127.0.0.1:{port} DOWN after 3 failed tcp checks: Connection refused") in msgs
    assert any(lvl == logging.INFO and "UP after 2 successful tcp checks" in m for lvl, m in msgs)


def test_monitor_sync_removes_restarts_and_keeps_state():
    async def main():
        hits = {"a": 0, "b": 0}

        def counting(name):
            async def handle(reader, writer):
                hits[name] += 1
                writer.close()
            return handle
        server_a, port_a = await tcp_server(counting("a"))
        server_b, port_b = await tcp_server(counting("b"))
        async with server_a, server_b:
            mon = HealthMonitor(Changes())
            target = Target(SVC, "127.0.0.1", port_a, hc())
            mon.sync([target])
            await until(lambda: hits["a"] >= 2)
            st = mon.states()[target.key]
            st.up = False  # pretend it was down: a check-config change must not reset that

            # Same server, new check (probe port_b): restarted, same HealthState object.
            mon.sync([target._replace(check=hc(port=port_b, rise=5))])
            assert mon.states()[target.key] is st and st.rise == 5
            await until(lambda: hits["b"] >= 2)
            a_then = hits["a"]
            await asyncio.sleep(0.2)
            assert hits["a"] == a_then  # the old task is gone

            mon.sync([])
            assert mon.up(SVC, "127.0.0.1", port_a) is None and mon.states() == {}
            await asyncio.sleep(0.02)
            b_then = hits["b"]
            await asyncio.sleep(0.2)
            assert hits["b"] == b_then
            assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("health ")]
            await mon.close()
    run(main())


def test_monitor_pause_stops_checks_and_keeps_state():
    async def main():
        server, port = await tcp_server()
        async with server:
            mon = HealthMonitor(Changes())
            target = Target(SVC, "127.0.0.1", port, hc())
            mon.sync([target])
            await until(lambda: mon.states()[target.key].checks >= 2)
            st = mon.states()[target.key]
            mon.pause(SVC, "127.0.0.1", port, True)
            await asyncio.sleep(0.07)  # let an in-flight check finish
            n = st.checks
            await asyncio.sleep(0.25)
            assert st.checks == n and mon.up(SVC, "127.0.0.1", port) is True
            mon.pause(SVC, "127.0.0.1", port, False)
            await until(lambda: st.checks >= n + 2)
            assert mon.states()[target.key] is st
            await mon.close()
    run(main())


def test_monitor_survives_a_failing_on_change_and_closes_cleanly(caplog):
    log = logging.getLogger("test_health.boom")

    def on_change(target, up, reason):
        raise RuntimeError("callback bug")

    async def main():
        mon = HealthMonitor(on_change, log=log)
        target = Target(SVC, "127.0.0.1", free_port(), hc(fall=1, rise=1))
        mon.sync([target])
        st = mon.states()[target.key]
        await until(lambda: st.transitions >= 1)
        n = st.checks
        await until(lambda: st.checks >= n + 2)  # the task is still running
        task = [t for t in asyncio.all_tasks() if t.get_name().startswith("health ")]
        await mon.close()
        assert task and all(t.done() for t in task)
        assert mon.states() == {}
    with caplog.at_level(logging.INFO, logger=log.name):
        run(main())
    assert any("on_change" in r.getMessage() and r.exc_info for r in caplog.records if r.name == log.name)


def test_monitor_first_check_is_jittered_within_a_second(monkeypatch):
    monkeypatch.setattr(health.random, "random", lambda: 0.5)

    async def main():
        server, port = await tcp_server()
        async with server:
            mon = HealthMonitor(Changes())
            target = Target(SVC, "127.0.0.1", port, hc(interval=10.0))
            t0 = time.monotonic()
            mon.sync([target])
            await until(lambda: mon.states()[target.key].checks == 1)
            assert 0.45 <= time.monotonic() - t0 < 1.0  # min(interval, 1 s) x 0.5
            await mon.close()
    run(main())


def test_monitor_uses_the_checks_own_port_and_rejects_unknown_types():
    async def main():
        server, port = await tcp_server()
        async with server:
            mon = HealthMonitor(Changes())
            target = Target(SVC, "127.0.0.1", free_port(), hc(port=port))  # server port closed
            mon.sync([target])
            st = mon.states()[target.key]
            await until(lambda: st.checks >= 3)
            assert st.failures == 0 and st.up
            with pytest.raises(ValueError, match="unknown check type"):
                mon.sync([target, Target(SVC, "127.0.0.2", 80, replace(hc(), type="icmp"))])
            assert list(mon.states()) == [target.key]  # nothing applied
            await mon.close()
        return mon, target
    mon, target = run(main())
    with pytest.raises(RuntimeError):
        mon.sync([target])  # must be called from the running loop
    assert os.environ.get("PYLVS_RS_ADDRESS") is None  # exec env is per child, not ours
