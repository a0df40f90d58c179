"""The Prometheus exposition of a snapshot, and the in-loop HTTP endpoint serving it."""

from __future__ import annotations

import asyncio
import copy

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pylvs.control.metrics import CONTENT_TYPE, SnapshotCollector, render, start_metrics_server

pytestmark = pytest.mark.once

CLIENT = "198.18.0.10"
BIG = 9_007_199_254_740_000  # past 2**32 and 2**52, still exact as a float (< 2**53)


def _counters(c, p_in, p_out, b_in, b_out):
    return {"conns": c, "pkts_in": p_in, "pkts_out": p_out, "bytes_in": b_in, "bytes_out": b_out}


def _rs(addr, port, health, *, forward="Masq", mode="nat", weight=1, active=0, inactive=0, counters=None):
    return {"address": addr, "port": port, "mode": mode, "forward": forward, "weight": weight,
            "config_weight": weight, "state": "ready", "health": health, "sorry": False,
            "active": active, "inactive": inactive, "persist": 0,
            **(counters or _counters(0, 0, 0, 0, 0)),
            "rate": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0}}


SNAP = {
    "version": "0.1.0", "implementation": "native", "event_loop": "uvloop 0.23.0",
    "conn_table": {"entries": 12, "limit": 1048576, "fast_flows": 9},
    "timeouts": {"tcp": 900.0, "tcpfin": 120.0, "udp": 300.0},
    "drops": {"no_service": 3, "bad_checksum": 7},
    "totals": _counters(1000, 2_000_000, 1_900_000, BIG, 4_000_000_000),
    # Not part of the schema: a client address lying around must never surface as a label.
    "conn": {"client": CLIENT, "cport": 40000},
    "services": [
        {"protocol": "tcp", "address": "198.18.0.100", "port": 80, "scheduler": "wrr", "flags": [],
         "persistent": 0.0, "netmask": "255.255.255.255", "mode": "nat", "expire_nodest_conn": False,
         **_counters(900, 1_800_000, 1_700_000, BIG - 1, 3_500_000_000),
         "rate": {"cps": 1, "inpps": 2, "outpps": 3, "inbps": 4, "outbps": 5},
         "clients": [CLIENT],
         "real_servers": [
             _rs("198.19.0.11", 8080, "up", weight=3, active=17, inactive=4,
                 counters=_counters(600, 1_200_000, 1_100_000, 5_000_000_000_000, 2_000_000_000)),
             _rs("198.19.0.12", 8080, "down", weight=0, active=0, inactive=1,
                 counters=_counters(300, 600_000, 600_000, 1, 2)),
             _rs("198.19.0.13", 8080, "unchecked", weight=2, active=5, inactive=0),
         ]},
        {"protocol": "udp", "address": "198.18.0.101", "port": 53, "scheduler": "rr", "flags": [],
         "persistent": 0.0, "netmask": "255.255.255.255", "mode": "dr", "expire_nodest_conn": False,
         **_counters(100, 200_000, 200_000, 1, 500_000_000),
         "rate": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0},
         "real_servers": [_rs("198.19.0.11", 53, "up", forward="Route", mode="dr", active=0, inactive=9)]},
    ],
}


def _parse(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _samples(fams, family, sample_name=None) -> dict:
    """{frozenset(labels.items()): value} for one family's samples named sample_name (default: family)."""
    f = fams[family]
    name = sample_name or f.name
    return {frozenset(s.labels.items()): s.value for s in f.samples if s.name == name}


def _be(local, lport, remote, rport, proto, forward):
    return frozenset({"local_address": local, "local_port": str(lport), "remote_address": remote,
                      "remote_port": str(rport), "proto": proto, "forward": forward}.items())


WEB1 = _be("198.18.0.100", 80, "198.19.0.11", 8080, "TCP", "Masq")
WEB2 = _be("198.18.0.100", 80, "198.19.0.12", 8080, "TCP", "Masq")
WEB3 = _be("198.18.0.100", 80, "198.19.0.13", 8080, "TCP", "Masq")
DNS1 = _be("198.18.0.101", 53, "198.19.0.11", 53, "UDP", "Route")


def test_totals_and_tables():
    fams = _parse(render(lambda: SNAP))
    assert fams["pylvs_connections"].type == "counter"
    def total(stem):
        return _samples(fams, f"pylvs_{stem}", f"pylvs_{stem}_total")
    assert total("connections") == {frozenset(): 1000}
    assert total("incoming_packets") == {frozenset(): 2_000_000}
    assert total("outgoing_packets") == {frozenset(): 1_900_000}
    assert total("incoming_bytes") == {frozenset(): BIG}
    assert total("outgoing_bytes") == {frozenset(): 4_000_000_000}
    assert _samples(fams, "pylvs_conn_table_entries") == {frozenset(): 12}
    assert _samples(fams, "pylvs_conn_table_limit") == {frozenset(): 1048576}
    assert _samples(fams, "pylvs_fast_path_flows") == {frozenset(): 9}
    for g in ("pylvs_conn_table_entries", "pylvs_conn_table_limit", "pylvs_fast_path_flows"):
        assert fams[g].type == "gauge"


def test_backends():
    fams = _parse(render(lambda: SNAP))
    assert fams["pylvs_backend_connections_active"].type == "gauge"
    assert _samples(fams, "pylvs_backend_connections_active") == {WEB1: 17, WEB2: 0, WEB3: 5, DNS1: 0}
    assert _samples(fams, "pylvs_backend_connections_inactive") == {WEB1: 4, WEB2: 1, WEB3: 0, DNS1: 9}
    assert _samples(fams, "pylvs_backend_weight") == {WEB1: 3, WEB2: 0, WEB3: 2, DNS1: 1}
    assert _samples(fams, "pylvs_backend_connections", "pylvs_backend_connections_total") == {
        WEB1: 600, WEB2: 300, WEB3: 0, DNS1: 0}
    def total(stem):
        return _samples(fams, f"pylvs_backend_{stem}", f"pylvs_backend_{stem}_total")
    assert total("incoming_bytes")[WEB1] == 5_000_000_000_000
    assert total("outgoing_bytes")[WEB2] == 2
    assert total("incoming_packets")[WEB1] == 1_200_000
    assert total("outgoing_packets")[WEB1] == 1_100_000
    for stem in ("connections", "incoming_packets", "outgoing_packets", "incoming_bytes", "outgoing_bytes"):
        assert fams[f"pylvs_backend_{stem}"].type == "counter"


def test_health_omits_unchecked():
    fams = _parse(render(lambda: SNAP))
    assert fams["pylvs_health_check_up"].type == "gauge"
    assert _samples(fams, "pylvs_health_check_up") == {WEB1: 1, WEB2: 0, DNS1: 1}


def test_services():
    fams = _parse(render(lambda: SNAP))
    web = frozenset({"local_address": "198.18.0.100", "local_port": "80", "proto": "TCP"}.items())
    dns = frozenset({"local_address": "198.18.0.101", "local_port": "53", "proto": "UDP"}.items())
    assert _samples(fams, "pylvs_service_connections", "pylvs_service_connections_total") == {
        web: 900, dns: 100}
    assert _samples(fams, "pylvs_service_incoming_bytes", "pylvs_service_incoming_bytes_total") == {
        web: BIG - 1, dns: 1}
    assert _samples(fams, "pylvs_service_outgoing_bytes", "pylvs_service_outgoing_bytes_total") == {
        web: 3_500_000_000, dns: 500_000_000}
    assert _samples(fams, "pylvs_service_incoming_packets", "pylvs_service_incoming_packets_total") == {
        web: 1_800_000, dns: 200_000}
    assert _samples(fams, "pylvs_service_outgoing_packets", "pylvs_service_outgoing_packets_total") == {
        web: 1_700_000, dns: 200_000}


def test_drops_and_build_info():
    fams = _parse(render(lambda: SNAP))
    assert fams["pylvs_dropped_packets"].type == "counter"
    assert _samples(fams, "pylvs_dropped_packets", "pylvs_dropped_packets_total") == {
        frozenset({("reason", "no_service")}): 3, frozenset({("reason", "bad_checksum")}): 7}
    assert fams["pylvs_build_info"].type == "gauge"
    assert _samples(fams, "pylvs_build_info") == {frozenset(
        {"version": "0.1.0", "implementation": "native", "event_loop": "uvloop 0.23.0"}.items()): 1}


def test_no_client_address_and_every_family_documented():
    text = render(lambda: SNAP)
    assert f'"{CLIENT}"'.encode() not in text  # quoted: the VIP 198.18.0.100 starts with the same digits
    fams = _parse(text)
    assert len(fams) == 5 + 5 + 3 + 5 + 1 + 3 + 1 + 1
    for f in fams.values():
        assert f.documentation, f.name
        assert f.name.startswith("pylvs_")
        for s in f.samples:
            assert CLIENT not in s.labels.values()
            assert "client" not in "".join(s.labels)


def test_empty_snapshot_and_duplicate_backend():
    fams = _parse(render(lambda: {"services": [], "drops": {}}))
    assert _samples(fams, "pylvs_connections", "pylvs_connections_total") == {frozenset(): 0}
    assert _samples(fams, "pylvs_dropped_packets", "pylvs_dropped_packets_total") == {}
    # a sorry server that is also a listed real server: one sample per label set, or the scrape is rejected
    snap = copy.deepcopy(SNAP)
    web = snap["services"][0]["real_servers"]
    web.append(dict(web[0], sorry=True, active=99))
    assert _samples(_parse(render(lambda: snap)), "pylvs_backend_connections_active")[WEB1] == 17


def test_snapshot_read_only_at_collect():
    calls = []
    c = SnapshotCollector(lambda: calls.append(1) or SNAP)
    assert calls == [] and list(c.describe()) == []
    list(c.collect())
    assert calls == [1]


# --- the endpoint ------------------------------------------------------------------------------------

TIMEOUT = 5.0  # bound on every wait in these tests


async def _request(port: int, raw: bytes) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        writer.write(raw)
        await asyncio.wait_for(writer.drain(), TIMEOUT)
        data = await asyncio.wait_for(reader.read(), TIMEOUT)  # server closes after answering
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, body


def _serve(scenario, get_snapshot=lambda: SNAP, **kw):
    async def main():
        server = await start_metrics_server("127.0.0.1", 0, get_snapshot, **kw)
        try:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.wait_for(scenario(port), 3 * TIMEOUT)
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    return asyncio.run(main())


def test_endpoint_metrics():
    status, headers, body = _serve(lambda port: _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE
    assert int(headers["content-length"]) == len(body)
    assert _samples(_parse(body), "pylvs_backend_connections_active")[WEB1] == 17


def test_endpoint_index_404_405_400():
    async def scenario(port):
        return [await _request(port, b"GET / HTTP/1.0\r\n\r\n"),
                await _request(port, b"GET /nope HTTP/1.0\r\n\r\n"),
                await _request(port, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
                await _request(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
                await _request(port, b"\r\n\r\n")]
    index, nope, post, query, bad = _serve(scenario)
    assert index[0] == 200 and b'href="/metrics"' in index[2]
    assert nope[0] == 404
    assert post[0] == 405 and post[1]["allow"] == "GET"
    assert query[0] == 200
    assert bad[0] == 400


def test_endpoint_render_error_is_500(caplog):
    def broken():
        raise RuntimeError("boom")
    status, _, body = _serve(lambda port: _request(port, b"GET /metrics HTTP/1.0\r\n\r\n"), broken)
    assert status == 500 and b"boom" not in body
    assert any("rendering metrics failed" in r.getMessage() for r in caplog.records)


def test_endpoint_cuts_off_silent_and_oversized_clients():
    async def scenario(port):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        t0 = loop.time()
        # sends nothing: closed by the 0.2 s bound, well before ours
        got = await asyncio.wait_for(reader.read(), TIMEOUT)
        silent = (got, loop.time() - t0)
        writer.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        writer.write(b"GET /metrics HTTP/1.0\r\n" + b"X-Pad: " + b"a" * 2000)  # no end of head, over 1 KiB
        got = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
        # and the server still answers afterwards
        ok = await _request(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        return silent, got, ok[0]
    (silent, elapsed), oversized, ok = _serve(scenario, timeout=0.2, max_head=1024)
    assert silent == b"" and elapsed < TIMEOUT
    assert oversized == b""
    assert ok == 200
