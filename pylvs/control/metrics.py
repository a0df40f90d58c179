"""Prometheus exposition of a Director snapshot, served from the event loop itself.

The metric names mirror node_exporter's IPVS collector (``node_ipvs_*``) with a ``pylvs_`` prefix and the
same label names, so dashboards written for kernel IPVS carry over.  Nothing here runs per packet: the
snapshot (see :mod:`pylvs.control.snapshot`) is taken only when Prometheus scrapes.

The HTTP server is a few lines of ``asyncio.start_server`` rather than prometheus_client's
``start_http_server`` on purpose: that one answers from a thread, which would read the Director's tables
while the event loop mutates them.  Answering in the loop makes every scrape a consistent picture.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable
from urllib.parse import urlsplit

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("pylvs.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_HEAD = 8192        # a scrape's request head is a few hundred bytes; anything bigger is not Prometheus
HEAD_TIMEOUT = 5.0     # seconds for the request head, and again for writing the answer

Snapshot = Callable[[], dict]

#: (metric stem, snapshot key, what it counts) -- the five IPVS counters, in node_exporter's naming
_COUNTERS = (
    ("connections", "conns", "connections scheduled"),
    ("incoming_packets", "pkts_in", "incoming packets"),
    ("outgoing_packets", "pkts_out", "outgoing packets"),
    ("incoming_bytes", "bytes_in", "incoming bytes"),
    ("outgoing_bytes", "bytes_out", "outgoing bytes"),
)
_SVC_LABELS = ["local_address", "local_port", "proto"]
_BACKEND_LABELS = ["local_address", "local_port", "remote_address", "remote_port", "proto", "forward"]
_HEALTH = {"up": 1, "down": 0}  # "unchecked" has no value to report: omitted rather than faked


class SnapshotCollector:
    """A custom collector: every ``collect()`` builds fresh families from one ``get_snapshot()`` call."""

    def __init__(self, get_snapshot: Snapshot) -> None:
        self._get_snapshot = get_snapshot

    def describe(self):
        # Empty on purpose: registering on an auto-describing registry (the default REGISTRY) would
        # otherwise call collect(), i.e. take a snapshot, at registration time.
        return []

    def collect(self):
        snap = self._get_snapshot()
        totals = snap.get("totals", {})
        for stem, key, what in _COUNTERS:
            yield CounterMetricFamily(f"pylvs_{stem}_total", f"The total number of {what}.",
                                      value=totals.get(key, 0))

        svc = {stem: CounterMetricFamily(f"pylvs_service_{stem}_total", f"The total number of {what}, "
                                         "per virtual service.", labels=_SVC_LABELS)
               for stem, _, what in _COUNTERS}
        be = {stem: CounterMetricFamily(f"pylvs_backend_{stem}_total", f"The total number of {what}, "
                                        "per real server.", labels=_BACKEND_LABELS)
              for stem, _, what in _COUNTERS}
        active = GaugeMetricFamily("pylvs_backend_connections_active",
                                   "The current active connections by local and remote address.",
                                   labels=_BACKEND_LABELS)
        inactive = GaugeMetricFamily("pylvs_backend_connections_inactive",
                                     "The current inactive connections by local and remote address.",
                                     labels=_BACKEND_LABELS)
        weight = GaugeMetricFamily("pylvs_backend_weight",
                                   "The effective weight of the real server (0 = quiescent).",
                                   labels=_BACKEND_LABELS)
        health = GaugeMetricFamily("pylvs_health_check_up",
                                   "1 if the real server's health check passes, 0 if it fails "
                                   "(servers without a health check are omitted).", labels=_BACKEND_LABELS)
        for s in snap.get("services", []):
            proto = str(s["protocol"]).upper()  # node_exporter says "TCP"/"UDP"
            local = [str(s["address"]), str(s["port"])]
            for stem, key, _ in _COUNTERS:
                svc[stem].add_metric(local + [proto], s[key])
            seen = set()
            for rs in s.get("real_servers", []):
                labels = [*local, str(rs["address"]), str(rs["port"]), proto, str(rs["forward"])]
                # The sorry server could coincide with a listed real server; two samples with one label
                # set make Prometheus reject the whole scrape, so the first one wins.
                if tuple(labels) in seen:
                    continue
                seen.add(tuple(labels))
                active.add_metric(labels, rs["active"])
                inactive.add_metric(labels, rs["inactive"])
                weight.add_metric(labels, rs["weight"])
                for stem, key, _ in _COUNTERS:
                    be[stem].add_metric(labels, rs[key])
                if rs.get("health") in _HEALTH:
                    health.add_metric(labels, _HEALTH[rs["health"]])
        yield from svc.values()
        yield active
        yield inactive
        yield weight
        yield from be.values()
        yield health

        ct = snap.get("conn_table", {})
        yield GaugeMetricFamily("pylvs_conn_table_entries", "Entries in the connection table.",
                                value=ct.get("entries", 0))
        yield GaugeMetricFamily("pylvs_conn_table_limit", "Maximum entries in the connection table.",
                                value=ct.get("limit", 0))
        yield GaugeMetricFamily("pylvs_fast_path_flows", "Flows currently forwarded by the fast path.",
                                value=ct.get("fast_flows", 0))
        drops = CounterMetricFamily("pylvs_dropped_packets_total", "Packets dropped, by reason.",
                                    labels=["reason"])
        for reason, n in snap.get("drops", {}).items():
            drops.add_metric([str(reason)], n)
        yield drops
        info = GaugeMetricFamily("pylvs_build_info", "pylvs version, hot-path implementation and event "
                                 "loop; constant 1.", labels=["version", "implementation", "event_loop"])
        info.add_metric([str(snap.get(k, "")) for k in ("version", "implementation", "event_loop")], 1)
        yield info


def render(get_snapshot: Snapshot) -> bytes:
    """The text exposition of one snapshot."""
    # A private registry per call: nothing global to register into (or collide with in tests).
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get_snapshot))
    return generate_latest(registry)


_INDEX = (b"<html><head><title>pylvs</title></head><body><h1>pylvs</h1>"
          b'<p><a href="/metrics">Metrics</a></p></body></html>\n')
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error"}


def _response(status: int, body: bytes, ctype: str = "text/plain; charset=utf-8", extra: str = "") -> bytes:
    head = (f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("ascii") + body


async def _read_head(reader: asyncio.StreamReader, max_head: int) -> bytes | None:
    """Bytes up to the blank line ending the request head; None if the client stops or sends too much."""
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        chunk = await reader.read(max_head + 1 - len(buf))
        if not chunk:
            return None
        buf += chunk
        if len(buf) > max_head:
            return None
    return buf


def _answer(head: bytes, get_snapshot: Snapshot) -> bytes:
    parts = head.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) < 2:
        return _response(400, b"bad request\n")
    method, target = parts[0], parts[1]
    if method != "GET":
        return _response(405, b"method not allowed\n", extra="Allow: GET\r\n")
    path = urlsplit(target).path
    if path == "/metrics":
        try:
            body = render(get_snapshot)
        except Exception:
            log.exception("rendering metrics failed")
            return _response(500, b"error rendering metrics\n")
        return _response(200, body, CONTENT_TYPE)
    if path == "/":
        return _response(200, _INDEX, "text/html; charset=utf-8")
    return _response(404, b"not found\n")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, get_snapshot: Snapshot,
                  timeout: float, max_head: int) -> None:
    try:
        try:
            async with asyncio.timeout(timeout):
                head = await _read_head(reader, max_head)
        except TimeoutError:
            head = None
        if head is not None:
            writer.write(_answer(head, get_snapshot))
            # Bounded too: a client that never reads must not pin the connection.
            async with asyncio.timeout(timeout):
                await writer.drain()
    except Exception as e:  # a scraper's misbehaviour is its problem, never the director's
        log.debug("metrics connection: %r", e)
    finally:
        writer.close()
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except Exception as e:
            log.debug("metrics connection close: %r", e)


async def start_metrics_server(host: str, port: int, get_snapshot: Snapshot, *, timeout: float = HEAD_TIMEOUT,
                               max_head: int = MAX_HEAD) -> asyncio.AbstractServer:
    """Serve ``GET /metrics`` on host:port from the running loop; the caller closes the returned server."""
    return await asyncio.start_server(
        lambda r, w: _handle(r, w, get_snapshot, timeout, max_head), host, port)
