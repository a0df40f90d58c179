"""The control plane of a running pylvs: health checks, the ctl socket, the metrics endpoint, reloads.

It lives on the same event loop as the datapath and only ever touches the Director between batches, so
every change is atomic with respect to packets: a request is validated completely (the configuration
validator, then :func:`pylvs.core.reconfig.check`) before the first thing changes, and is then applied in
one synchronous step.  Nothing here runs per packet.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from ipaddress import ip_address
from typing import Any, Callable

from pylvs.config import ConfigError, load_config, parse_config, parse_listen
from pylvs.control import ops, sdnotify
from pylvs.control.document import EditError, config_doc, dumps
from pylvs.control.health import HealthMonitor, Target
from pylvs.control.snapshot import (
    ESTIMATOR_INTERVAL, RateEstimator, conn_view, conn_views, counted_objects, snapshot,
)
from pylvs.core.reconfig import ReconfigError
from pylvs.core.service import PROTOCOLS

log = logging.getLogger("pylvs.control")

MAX_REQUEST = 1 << 20
REQUEST_TIMEOUT = 10.0
#: ``ctl conns`` over the socket answers in lines of this many rows, the datapath running between them: a
#: table of a million flows is never rendered in one go (that stalled forwarding for seconds)
CONNS_CHUNK = 2000
_WHAT = {"ctl": "control socket", "metrics": "metrics"}


class ControlPlane:
    def __init__(self, director, *, config_path: str | None, mode_override: str | None = None,
                 event_loop: str = "", clock: Callable[[], float] = time.monotonic,
                 ctl_socket: str | None = None, metrics: str | None = None) -> None:
        self.director = director
        self.config_path = config_path
        self.mode_override = mode_override
        self.event_loop = event_loop
        self.clock = clock
        ctl = director.config.control
        self.ctl_socket = ctl.socket if ctl_socket is None else ctl_socket
        self.metrics_addr = ctl.metrics if metrics is None else metrics
        # What the command line set stays over reloads; the file's [control] is followed otherwise.
        self._fixed = {"ctl": ctl_socket is not None, "metrics": metrics is not None}
        self.estimator = RateEstimator()
        self._next_sample = 0.0
        self.health = HealthMonitor(self._on_health)
        self._targets: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._rebinding: asyncio.Task | None = None
        self.reloads = {"ok": 0, "failed": 0}
        self.on_addresses_changed: Callable[[], None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if self.ctl_socket:
            self._servers["ctl"] = await self._start_ctl(self.ctl_socket)
            log.info("control socket: %s", self.ctl_socket)
        if self.metrics_addr:
            self._servers["metrics"] = await self._start_metrics(self.metrics_addr)
            log.info("metrics: http://%s/metrics", self.metrics_addr)
        self._sync_health()

    async def _start_metrics(self, addr: str) -> asyncio.AbstractServer:
        from pylvs.control.metrics import start_metrics_server

        host, port = parse_listen(addr)
        return await start_metrics_server(host, port, self.snapshot)

    @staticmethod
    async def _stop(srv: asyncio.AbstractServer | None) -> None:
        if srv is None:
            return
        srv.close()
        try:
            await asyncio.wait_for(srv.wait_closed(), 2.0)
        except (asyncio.TimeoutError, Exception):  # a stuck client never holds up the exit
            pass

    async def close(self) -> None:
        if self._rebinding is not None:
            await asyncio.gather(self._rebinding, return_exceptions=True)
        for srv in list(self._servers.values()):
            await self._stop(srv)
        self._servers.clear()
        await self.health.close()
        if self.ctl_socket:
            try:
                os.unlink(self.ctl_socket)
            except OSError:
                pass

    def _follow_control(self, control) -> list[str]:
        """A reload moved ``[control]``: the ctl socket and the metrics endpoint move too (what the command
        line set stays).  The new one is bound before the old one closes, on the loop, right after this
        request; if it cannot be bound the old one stays and the log says why."""
        want = {"ctl": self.ctl_socket if self._fixed["ctl"] else control.socket,
                "metrics": self.metrics_addr if self._fixed["metrics"] else control.metrics}
        have = {"ctl": self.ctl_socket, "metrics": self.metrics_addr}
        moves = {k: v for k, v in want.items() if v != have[k]}
        if not moves:
            return []
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (an embedder driving handle() by hand): nothing is bound
            return []
        prev = self._rebinding
        self._rebinding = loop.create_task(self._rebind(moves, prev))
        return [f"{_WHAT[k]} moving: {have[k] or 'off'} -> {v or 'off'}" for k, v in moves.items()]

    async def _rebind(self, moves: dict[str, str], prev: asyncio.Task | None) -> None:
        if prev is not None:  # one move at a time, in order
            await asyncio.gather(prev, return_exceptions=True)
        for kind, addr in moves.items():
            old_addr = self.ctl_socket if kind == "ctl" else self.metrics_addr
            try:
                new = None
                if addr:
                    new = await (self._start_ctl(addr) if kind == "ctl" else self._start_metrics(addr))
            except (OSError, ValueError) as e:
                log.error("reload: cannot move the %s to %s (%s); it stays at %s", _WHAT[kind], addr, e,
                          old_addr or "off")
                continue
            await self._stop(self._servers.pop(kind, None))
            if new is not None:
                self._servers[kind] = new
            if kind == "ctl":
                if old_addr:
                    try:
                        os.unlink(old_addr)
                    except OSError:
                        pass
                self.ctl_socket = addr
            else:
                self.metrics_addr = addr
            log.info("%s now %s", _WHAT[kind], addr or "off")

    def tick(self, now: float) -> None:
        """From the runner's timer: the rate estimator's 2-second samples."""
        if now >= self._next_sample:
            self._next_sample = now + ESTIMATOR_INTERVAL
            self.director.fast.fold_counters()
            self.estimator.sample(counted_objects(self.director), now)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict:
        return snapshot(self.director, self.estimator, event_loop=self.event_loop)

    def _sync_health(self) -> None:
        """Checks for every configured server that has one; maint pauses them (HAProxy MAINT)."""
        targets: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        wanted = []
        for s in self.director.services:
            by_key = {(rs.address.packed, rs.port): rs for rs in s.cfg.real_servers}
            for d in s.dests:
                rs = by_key[(d.addr, d.port)]
                if rs.health_check is None:
                    if d.healthy is not None:
                        self.director.set_health(s, d, None)
                    continue
                t = Target(s.label, str(rs.address), rs.port, rs.health_check)
                targets[t.key] = (s, d)
                wanted.append(t)
        self._targets = targets
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (tests, embedding): checks start with start()
            return
        self.health.sync(wanted)
        for (label, addr, port), (s, d) in targets.items():
            self.health.pause(label, addr, port, d.admin == "maint")
            if d.healthy is None:  # newly checked: it starts up, as keepalived's and HAProxy's do
                self.director.set_health(s, d, self.health.up(label, addr, port))

    def _on_health(self, target: Target, up: bool, reason: str) -> None:
        hit = self._targets.get(target.key)
        if hit is None:
            return
        svc, dest = hit
        self.director.set_health(svc, dest, up)

    # ------------------------------------------------------------------ changes

    def apply(self, cfg, what: str) -> list[str]:
        """Apply a validated configuration; ReconfigError leaves everything as it was."""
        changes = self.director.reconfigure(cfg)
        changes += self._follow_control(cfg.control)
        self._sync_health()
        if self.on_addresses_changed is not None:
            self.on_addresses_changed()
        log.info("%s: %s", what, "; ".join(c for c in changes if c != what) or "done")
        return changes

    def reload(self) -> dict:
        """SIGHUP and ``ctl reload``: the file again, validated whole; an invalid one changes nothing."""
        if not self.config_path:
            return {"ok": False, "error": "no configuration file to reload from"}
        sdnotify.reloading()
        try:
            cfg = load_config(self.config_path, self.mode_override)
            changes = self.apply(cfg, f"reload of {self.config_path}")
        except (ConfigError, ReconfigError) as e:
            self.reloads["failed"] += 1
            log.error("reload rejected, running configuration unchanged: %s", e)
            return {"ok": False, "error": str(e)}
        finally:
            sdnotify.notify("READY=1", f"STATUS={self._status()}")
        self.reloads["ok"] += 1
        return {"ok": True, "changes": changes}

    def _status(self) -> str:
        d = self.director
        return f"{len(d.services)} services, {len(d.table)} connections"

    def handle(self, req: Any) -> dict:
        """One ctl request -> one answer; never raises."""
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": "a request is a JSON object with a string \"cmd\""}
        cmd = req["cmd"]
        try:
            if cmd in ops.EDITS:
                doc = config_doc(self.director.config)
                new_doc, what = ops.edit(doc, req)
                cfg = parse_config(new_doc, f"pylvs ctl {cmd}", None)
                return {"ok": True, "changes": self.apply(cfg, what), "done": what}
            if cmd == "list" or cmd == "timeouts":
                return {"ok": True, "result": self.snapshot()}
            if cmd == "conns":
                limit = req.get("limit")
                rows = list(conn_views(self.director, self.clock(),
                                       limit if isinstance(limit, int) and limit >= 0 else None))
                return {"ok": True, "result": rows}
            if cmd == "save":
                head = (f"pylvs ctl save: the running configuration ({time.strftime('%Y-%m-%d %H:%M:%S')})\n"
                        f"loaded from {self.config_path}, with the changes made since")
                return {"ok": True, "result": dumps(config_doc(self.director.config), head)}
            if cmd == "reload":
                return self.reload()
            if cmd == "zero":
                return {"ok": True, "done": self._zero(req.get("service"))}
            if cmd == "ping":
                return {"ok": True, "result": "pong"}
        except (EditError, ConfigError, ReconfigError) as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug must not take the datapath down with it
            log.exception("ctl %s failed", cmd)
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        return {"ok": False, "error": f"unknown command {cmd!r} (known: {', '.join(ops.EDITS + ops.READS)})"}

    def _zero(self, service: Any) -> str:
        """ipvsadm --zero: the packet, byte and connection counters of one service or all."""
        d = self.director
        d.fast.fold_counters()
        svcs = d.services
        if service is not None:
            proto, addr, port = ops._service_key({"service": service})
            try:
                packed = ip_address(addr).packed
            except ValueError:
                raise EditError(f"invalid service address {addr!r}") from None
            s = d.find_service(PROTOCOLS[proto], packed, port)
            if s is None:
                raise EditError(f"no service {proto.upper()} {addr}:{port}")
            svcs = [s]
        for s in svcs:
            for o in [s, *s.all_dests()]:
                o.conns = o.pkts_in = o.pkts_out = o.bytes_in = o.bytes_out = 0
        return f"counters zeroed ({len(svcs)} services)"

    # ------------------------------------------------------------------ the ctl socket

    async def _start_ctl(self, path: str) -> asyncio.AbstractServer:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        if os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket")
            try:  # a live pylvs answers: never steal its socket
                _, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
                w.close()
                raise OSError(f"{path}: another pylvs is listening there (set control.socket or --ctl-socket)")
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # stale: left by a process that died
        old = os.umask(0o177)  # created 0600: the ctl can change everything, so root (the owner) only
        try:
            srv = await asyncio.start_unix_server(self._client, path, limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return srv

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import json

        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
            try:
                req = json.loads(line)
            except ValueError as e:
                ans = {"ok": False, "error": f"request is not JSON: {e}"}
            else:
                if isinstance(req, dict) and req.get("cmd") == "conns":
                    await self._stream_conns(req, writer)
                    return
                ans = self.handle(req)
            writer.write(json.dumps(ans, default=str).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, ConnectionError) as e:
            log.debug("ctl client dropped: %r", e)
        finally:
            writer.close()

    async def _stream_conns(self, req: dict, writer: asyncio.StreamWriter) -> None:
        """``ctl conns``: the rows in lines of up to CONNS_CHUNK (``{"ok": true, "result": [...], "more": true}``),
        yielding to the event loop (the datapath) after each, then ``{"ok": true, "result": [], "more": false}``
        (ctlcli.request joins them)."""
        import json

        limit = req.get("limit")
        left = limit if isinstance(limit, int) and limit >= 0 else None
        last: dict = {"ok": True, "result": [], "more": False}
        try:
            for conns in self.director.table.chunks(CONNS_CHUNK):
                if left == 0:
                    break
                now = self.clock()  # the table moves between chunks: each is read at its own time
                rows = [conn_view(self.director, c, now) for c in conns if c.alive]
                if left is not None:
                    rows = rows[:left]
                    left -= len(rows)
                writer.write(json.dumps({"ok": True, "result": rows, "more": True}).encode() + b"\n")
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
                await asyncio.sleep(0)
        except (asyncio.TimeoutError, ConnectionError):
            raise
        except Exception as e:  # a bug must not take the datapath down with it
            log.exception("ctl conns failed")
            last = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
        writer.write(json.dumps(last).encode() + b"\n")
        await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
