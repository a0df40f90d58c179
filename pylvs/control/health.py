"""Health checks for real servers, with keepalived / HAProxy semantics.

Three layers, so each can be tested on its own:

- :class:`HealthState`, sans-I/O: rise/fall bookkeeping.  A server starts UP (keepalived's default
  without ``alpha``; HAProxy too), goes DOWN after ``fall`` consecutive failed checks and back UP after
  ``rise`` consecutive good ones (HAProxy ``rise``/``fall``; keepalived's ``retry`` is our ``fall``).
- the checkers, one coroutine per ``HealthCheck.type``, ``(address, port, hc) -> (ok, reason)``; they
  never raise (a broken server is a result, not an error) and are bounded by ``hc.timeout``.
- :class:`HealthMonitor`: one asyncio task per checked server, calls ``on_change`` on transitions.

Everything runs on the event loop without blocking it: sockets through asyncio streams/transports and
``exec`` checks through ``asyncio.create_subprocess_exec`` (keepalived forks MISC_CHECK scripts too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from pylvs.config import HealthCheck

HTTP_BODY_LIMIT = 64 * 1024  # like HAProxy's check buffer: enough for a status page, bounded memory


class HealthState:
    """Rise/fall counters of one server.  ``record`` returns the new ``up`` on a transition, else None."""

    # (up, ok) -> (streak attribute, threshold attribute, new up): the only two moves that can flip
    # the state.  A result that agrees with the state (up+ok, down+fail) never changes it; a result
    # that disagrees only counts towards the threshold, and any agreeing result resets that streak.
    TRANSITIONS = {
        (True, False): ("fail_streak", "fall", False),
        (False, True): ("ok_streak", "rise", True),
    }

    __slots__ = ("rise", "fall", "up", "ok_streak", "fail_streak", "checks", "failures",
                 "last_error", "transitions")

    def __init__(self, rise: int = 2, fall: int = 3, *, up: bool = True) -> None:
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.up = up
        self.ok_streak = 0      # consecutive good checks
        self.fail_streak = 0    # consecutive failed checks
        self.checks = 0         # totals, for `pylvs ctl` / metrics
        self.failures = 0
        self.last_error = ""
        self.transitions = 0

    def record(self, ok: bool, reason: str = "") -> bool | None:
        self.checks += 1
        if ok:
            self.ok_streak += 1
            self.fail_streak = 0
        else:
            self.failures += 1
            self.fail_streak += 1
            self.ok_streak = 0
            self.last_error = reason
        move = self.TRANSITIONS.get((self.up, ok))
        if move is None:
            return None
        streak, threshold, new_up = move
        if getattr(self, streak) < getattr(self, threshold):
            return None
        self.up = new_up
        self.transitions += 1
        return new_up

    def __repr__(self) -> str:
        return (f"HealthState(up={self.up}, ok_streak={self.ok_streak}, fail_streak={self.fail_streak}, "
                f"checks={self.checks}, failures={self.failures}, transitions={self.transitions}, "
                f"last_error={self.last_error!r})")


# --- checkers ------------------------------------------------------------------------------------------

def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own text is "Connect call failed (...)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def check_tcp(address: str, port: int, hc: HealthCheck) -> tuple[bool, str]:
    """keepalived TCP_CHECK: the three-way handshake completes, then we close."""
    try:
        async with asyncio.timeout(hc.timeout):
            _, writer = await asyncio.open_connection(address, port)
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # an RST on close still means the port was listening
        return True, "connected"
    except Exception as exc:  # noqa: BLE001 - every failure is a check result; CancelledError passes
        return False, _why(exc)


async def check_http(address: str, port: int, hc: HealthCheck) -> tuple[bool, str]:
    """keepalived HTTP_GET / HAProxy ``option httpchk``: HTTP/1.0 so the server closes after the body."""
    writer = None
    try:
        async with asyncio.timeout(hc.timeout):
            reader, writer = await asyncio.open_connection(address, port)
            host = hc.host or (_host(address) if port == 80 else f"{_host(address)}:{port}")
            writer.write(f"GET {hc.path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n"
                         f"User-Agent: pylvs-health\r\nAccept: */*\r\n\r\n".encode("latin-1"))
            line = await reader.readline()
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                return False, f"bad status line {line[:80]!r}" if line else "connection closed, no reply"
            status = int(parts[1])
            lo, hi = hc.status
            if not lo <= status <= hi:
                return False, f"status {status}"
            if hc.body is None:
                return True, f"status {status}"
            while (await reader.readline()).strip():  # headers; readline is bounded by the stream limit
                pass
            body = b""
            # Stop as soon as the text shows up: no need to wait for EOF from a slow server.
            while len(body) < HTTP_BODY_LIMIT and hc.body not in body.decode("utf-8", "replace"):
                chunk = await reader.read(HTTP_BODY_LIMIT - len(body))
                if not chunk:
                    break
                body += chunk
            if hc.body in body.decode("utf-8", "replace"):
                return True, f"status {status}, body matched"
            return False, f"status {status}, body lacks {hc.body!r}"
    except Exception as exc:  # noqa: BLE001
        return False, _why(exc)
    finally:
        if writer is not None:
            writer.close()  # no wait_closed: the transport closes on its own, the verdict is in


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self, reply: asyncio.Future) -> None:
        self.reply = reply

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected UDP socket Linux reports an ICMP port unreachable as ECONNREFUSED on the next
        # receive: nobody listens, so fail now instead of waiting for the timeout.
        if not self.reply.done():
            self.reply.set_exception(exc)


async def check_udp(address: str, port: int, hc: HealthCheck) -> tuple[bool, str]:
    """keepalived UDP_CHECK-like: send ``hc.send``, one reply containing ``hc.expect`` means up."""
    transport = sock = None
    try:
        async with asyncio.timeout(hc.timeout):
            loop = asyncio.get_running_loop()
            family, _, _, _, sockaddr = (await loop.getaddrinfo(address, port, type=socket.SOCK_DGRAM))[0]
            # Our own connected socket, sent on directly: asyncio's transport.sendto silently drops an
            # empty datagram, and an empty ``send`` is a legitimate probe (any reply, or the ICMP error).
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(sockaddr)
            sock.send(hc.send.encode("utf-8"))
            reply: asyncio.Future = loop.create_future()
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProbe(reply), sock=sock)
            data = await reply
        text = data.decode("utf-8", "replace")
        if hc.expect in text:
            return True, f"reply of {len(data)} bytes"
        return False, f"reply lacks {hc.expect!r}: {text[:80]!r}"
    except Exception as exc:  # noqa: BLE001
        return False, _why(exc)
    finally:
        if transport is not None:
            transport.close()
        elif sock is not None:
            sock.close()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # start_new_session made the child a process-group leader (pgid == pid): kill the group so a
    # script's own children (curl, sleep...) die with it, as keepalived does for MISC_CHECK timeouts.
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


async def check_exec(address: str, port: int, hc: HealthCheck) -> tuple[bool, str]:
    """keepalived MISC_CHECK: run ``hc.command`` (no shell), exit status 0 means up."""
    if not hc.command:
        return False, "no command"
    # str.replace, not str.format: a command like awk '{print $1}' must pass through untouched.
    argv = [a.replace("{address}", address).replace("{port}", str(port)) for a in hc.command]
    env = dict(os.environ, PYLVS_RS_ADDRESS=address, PYLVS_RS_PORT=str(port))
    proc = None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True, env=env)
        async with asyncio.timeout(hc.timeout):
            rc = await proc.wait()
    except TimeoutError:
        if proc is None:
            return False, "timeout"
        _kill_group(proc)
        await proc.wait()  # reap: no zombie per timed-out check
        return False, f"timeout after {hc.timeout:g}s, killed"
    except Exception as exc:  # noqa: BLE001 - e.g. FileNotFoundError for a missing command
        return False, f"{argv[0]}: {_why(exc)}"
    except BaseException:  # cancelled (target removed, shutdown): do not leave the script running
        if proc is not None:
            _kill_group(proc)
        raise
    if rc == 0:
        return True, "exit 0"
    return False, f"exit {rc}" if rc > 0 else f"killed by signal {-rc}"


CHECKERS: dict[str, Callable] = {"tcp": check_tcp, "http": check_http, "udp": check_udp, "exec": check_exec}


# --- monitor -------------------------------------------------------------------------------------------

class Target(NamedTuple):
    service: str        # label, e.g. "TCP 198.18.0.100:80"
    address: str        # real server address
    port: int           # real server port (the check's own port, if set, wins for the probe)
    check: HealthCheck

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.service, self.address, self.port)


class HealthMonitor:
    """One task per checked real server; ``on_change(target, up, reason)`` on every transition."""

    def __init__(self, on_change: Callable[[Target, bool, str], None], *,
                 clock: Callable[[], float] = time.monotonic,
                 log: logging.Logger = logging.getLogger("pylvs.health")) -> None:
        self.on_change = on_change
        self.clock = clock
        self.log = log
        self._targets: dict[tuple[str, str, int], Target] = {}
        self._tasks: dict[tuple[str, str, int], asyncio.Task] = {}
        self._states: dict[tuple[str, str, int], HealthState] = {}
        self._paused: set[tuple[str, str, int]] = set()
        self._retiring: set[asyncio.Task] = set()  # cancelled, not yet finished: close() awaits them

    def sync(self, targets: Iterable[Target]) -> None:
        """Make the running checks match ``targets`` (call from the running loop, e.g. on reload)."""
        loop = asyncio.get_running_loop()
        wanted = {t.key: t for t in targets}
        for t in wanted.values():
            if t.check.type not in CHECKERS:  # validate all first: no half-applied sync
                raise ValueError(f"{t.service} -> {t.address}:{t.port}: unknown check type {t.check.type!r}")
        for key in list(self._tasks):
            new = wanted.get(key)
            if new is None or new.check != self._targets[key].check:
                self._retire(key)
            if new is None:  # gone: forget its state, a re-added server starts UP again
                self._states.pop(key, None)
                self._paused.discard(key)
        for key, t in wanted.items():
            if key in self._tasks:
                continue
            st = self._states.get(key)
            if st is None:
                st = self._states[key] = HealthState(t.check.rise, t.check.fall)
            else:  # changed check: keep up/down and the counters (keepalived reload keeps the state)
                st.rise, st.fall = max(1, t.check.rise), max(1, t.check.fall)
            self._targets[key] = t
            self._tasks[key] = loop.create_task(self._run(t, st), name=f"health {_label(t)}")

    def _retire(self, key) -> None:
        task = self._tasks.pop(key)
        self._targets.pop(key)
        task.cancel()
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def pause(self, service: str, address: str, port: int, paused: bool) -> None:
        """HAProxy maint: no checks while paused, the state stays as it was."""
        (self._paused.add if paused else self._paused.discard)((service, address, port))

    def states(self) -> dict[tuple[str, str, int], HealthState]:
        return dict(self._states)

    def up(self, service: str, address: str, port: int) -> bool | None:
        st = self._states.get((service, address, port))
        return None if st is None else st.up

    async def close(self) -> None:
        for key in list(self._tasks):
            self._retire(key)
        tasks = list(self._retiring)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._states.clear()
        self._paused.clear()

    async def _run(self, t: Target, st: HealthState) -> None:
        hc = t.check
        port = hc.port if hc.port is not None else t.port
        # Spread a big pool over the first second so the servers are not probed in lockstep.
        await asyncio.sleep(random.random() * min(hc.interval, 1.0))
        while True:
            started = self.clock()
            if t.key not in self._paused:
                try:
                    ok, reason = await CHECKERS[hc.type](t.address, port, hc)
                    self._record(t, st, ok, reason)
                except Exception:  # a bug must not silently end the checks of this server
                    self.log.exception("health check of %s failed unexpectedly", _label(t))
            # Start-to-start spacing, like keepalived's delay_loop: a slow check does not drift.
            await asyncio.sleep(max(0.0, started + hc.interval - self.clock()))

    def _record(self, t: Target, st: HealthState, ok: bool, reason: str) -> None:
        new_up = st.record(ok, reason)
        if new_up is None:
            return
        if new_up:
            self.log.info("%s UP after %d successful %s checks", _label(t), st.ok_streak, t.check.type)
        else:
            self.log.warning("%s DOWN after %d failed %s checks: %s", _label(t), st.fail_streak,
                             t.check.type, reason)
        try:
            self.on_change(t, new_up, reason)
        except Exception:
            self.log.exception("health on_change for %s failed", _label(t))


def _label(t: Target) -> str:
    return f"{t.service} -> {_host(t.address)}:{t.port}"
