"""Lab client: HTTP requests, a bulk download and UDP echoes against a VIP; prints one JSON object.

    python -m pylvs.lab.client http --host 198.18.0.100 --port 80 --count 200 --timeout 5
    python -m pylvs.lab.client bulk --host 198.18.0.100 --port 80 --bytes 10000000 --timeout 30
    python -m pylvs.lab.client udp  --host 198.18.0.100 --port 53 --count 30 --timeout 2

The server's name is the first word of each answer (pylvs.lab.servers).  Every HTTP request uses a new TCP
connection and every UDP echo a new socket (a new source port), so each is a new flow the director
schedules.  Bounded: counts are capped, every socket operation has a timeout, each request has a deadline
of ``--timeout`` as a whole, and the run as a whole stops after ``--max-seconds``.
Exit status 0 whenever the JSON was printed (failures are in it: "ok", "errors"); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time

from pylvs.lab.servers import pattern_chunks

MAX_COUNT = 1_000_000
MAX_HEAD = 16384  # response header bytes we accept
MAX_SMALL_BODY = 4096  # a GET / answer is one short line
RECV = 262144
N_ERRORS = 5
N_PEERS = 3


class HttpError(Exception):
    pass


def http_get(host: str, port: int, path: str, timeout: float, sink, max_body: int) -> tuple[int, dict]:
    """One GET on a new connection; body chunks go to ``sink`` (views that the next read overwrites:
    copy them to keep them).  Returns (status, headers)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        t = deadline - time.monotonic()
        if t <= 0:
            raise HttpError(f"timed out after {timeout:g} s")
        return t

    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                raise HttpError("response header too long")
            s.settimeout(left())
            data = s.recv(RECV)
            if not data:
                raise HttpError(f"connection closed after {len(buf)} header bytes")
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HttpError(f"bad status line {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", -1))
        if length > max_body:
            raise HttpError(f"body of {length} bytes exceeds the limit {max_body}")
        limit = length if length >= 0 else max_body
        got = 0
        if body:
            body = body[:limit]
            sink(body)
            got = len(body)
        buf = bytearray(RECV)  # one receive buffer: sink gets views of it, valid until the next recv
        view = memoryview(buf)
        while got < limit:  # bounded: at most `limit` bytes, and by the deadline
            s.settimeout(left())
            n = s.recv_into(buf, min(RECV, limit - got))
            if not n:
                if length >= 0:
                    raise HttpError(f"connection closed after {got} of {length} body bytes")
                break
            sink(view[:n])
            got += n
        return int(parts[1]), headers


def _err(errors: list, i: int, e: BaseException) -> None:
    if len(errors) < N_ERRORS:
        errors.append(f"#{i}: {type(e).__name__}: {e}")


def run_http(host: str, port: int, count: int, timeout: float, max_seconds: float) -> dict:
    ok, errors, by_server, peers = 0, [], {}, {}
    t0 = time.monotonic()
    for i in range(count):
        if time.monotonic() - t0 > max_seconds:
            _err(errors, i, TimeoutError(f"run stopped after {max_seconds:g} s"))
            break
        body = bytearray()
        try:
            status, _ = http_get(host, port, "/", timeout, body.extend, MAX_SMALL_BODY)
            words = body.decode(errors="replace").split()
            if status != 200 or len(words) != 2:
                raise HttpError(f"status {status}, body {bytes(body[:80])!r}")
        except (OSError, HttpError, ValueError) as e:
            _err(errors, i, e)
            continue
        ok += 1
        name, peer = words
        by_server[name] = by_server.get(name, 0) + 1
        seen = peers.setdefault(name, [])
        if len(seen) < N_PEERS:
            seen.append(peer)
    elapsed = time.monotonic() - t0
    return {"ok": ok, "count": count, "errors": errors, "by_server": by_server, "peers": peers,
            "elapsed": round(elapsed, 6), "rps": round(ok / elapsed, 3) if elapsed > 0 else 0.0}


def expected_sha256(n: int) -> str:
    h = hashlib.sha256()
    for chunk in pattern_chunks(n):
        h.update(chunk)
    return h.hexdigest()


def run_bulk(host: str, port: int, nbytes: int, timeout: float) -> dict:
    h = hashlib.sha256()
    got = 0

    def sink(chunk: bytes) -> None:
        nonlocal got
        h.update(chunk)
        got += len(chunk)

    t0 = time.monotonic()
    res = {"ok": False, "bytes": 0, "sha256": "", "expected_sha256": expected_sha256(nbytes), "server": None}
    try:
        status, headers = http_get(host, port, f"/bulk?bytes={nbytes}", timeout, sink, nbytes)
        res["server"] = headers.get("x-server")
        if status != 200:
            res["error"] = f"status {status}"
    except (OSError, HttpError, ValueError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
    elapsed = time.monotonic() - t0
    res.update(bytes=got, sha256=h.hexdigest(), elapsed=round(elapsed, 6),
               gbps=round(got * 8 / elapsed / 1e9, 6) if elapsed > 0 else 0.0)
    res["ok"] = "error" not in res and got == nbytes and res["sha256"] == res["expected_sha256"]
    return res


def run_udp(host: str, port: int, count: int, timeout: float, max_seconds: float) -> dict:
    ok, errors, by_server = 0, [], {}
    tag = os.urandom(4).hex()  # so a stray late answer from an earlier run is never counted
    t0 = time.monotonic()
    # Every socket stays open until the end: a closed socket's ephemeral port may be handed out again
    # at once, and a reused (client, port) would be the *same* UDP flow to the director (IPVS keeps UDP
    # entries for 300 s), not a new one to schedule. Open sockets never share a port.
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            if time.monotonic() - t0 > max_seconds:
                break
            payload = f"pylvs-echo {tag} {i}".encode()
            # connect(): the kernel then accepts answers only from host:port, as a resolver would
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.settimeout(timeout)
            try:
                s.connect((host, port))
                s.send(payload)
                reply = s.recv(65535)
            except OSError as e:
                _err(errors, i, e)
                continue
            name, _, rest = reply.partition(b" ")
            if rest != payload:
                _err(errors, i, ValueError(f"unexpected answer {reply[:80]!r}"))
                continue
            ok += 1
            key = name.decode(errors="replace")
            by_server[key] = by_server.get(key, 0) + 1
        ports = {s.getsockname()[1] for s in socks}
    finally:
        for s in socks:
            s.close()
    elapsed = time.monotonic() - t0
    return {"ok": ok, "count": count, "lost": count - ok, "by_server": by_server, "errors": errors,
            "source_ports": len(ports), "elapsed": round(elapsed, 6)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pylvs.lab.client", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, port, timeout in (("http", 80, 5.0), ("bulk", 80, 30.0), ("udp", 53, 2.0)):
        c = sub.add_parser(name)
        c.add_argument("--host", required=True)
        c.add_argument("--port", type=int, default=port)
        c.add_argument("--timeout", type=float, default=timeout,
                       help="seconds; for bulk, the whole download must finish within it")
        if name == "bulk":
            c.add_argument("--bytes", type=int, default=10_000_000)
        else:
            c.add_argument("--count", type=int, default=30)
            c.add_argument("--max-seconds", type=float, default=None,
                           help="stop the run after this long (default: count × timeout + 5)")
    a = p.parse_args(argv)
    if a.timeout <= 0:
        p.error("--timeout must be positive")
    if a.cmd == "bulk":
        if not 0 <= a.bytes <= 1 << 34:
            p.error("--bytes must be in [0, 2**34]")
        res = run_bulk(a.host, a.port, a.bytes, a.timeout)
    else:
        if not 1 <= a.count <= MAX_COUNT:
            p.error(f"--count must be in [1, {MAX_COUNT}]")
        budget = a.max_seconds if a.max_seconds is not None else a.count * a.timeout + 5
        if a.cmd == "http":
            res = run_http(a.host, a.port, a.count, a.timeout, budget)
        else:
            res = run_udp(a.host, a.port, a.count, a.timeout, budget)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
