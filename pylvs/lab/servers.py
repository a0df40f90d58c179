"""Lab real server: a threaded HTTP/1.1 server and a UDP echo server that say who they are.

``python -m pylvs.lab.servers --name rs1 --http-port 8080 --udp-port 5353`` (a port of 0 disables that
server).  Prints ``ready`` once both sockets listen; exits on SIGTERM/SIGINT (or after ``--max-seconds``).

- ``GET /`` → 200, body ``rs1 <peer_ip>:<peer_port>\\n``: the peer is what this server sees, so a test can
  tell NAT/DR/TUN (client address) from FULLNAT (LIP:lport).
- ``GET /bulk?bytes=N`` → N bytes ``i % 251`` (a prime period, so a dropped, duplicated or reordered
  segment changes the sha256), streamed from one precomputed buffer, header ``X-Server: rs1``.
- UDP: replies ``b"rs1 " + payload`` *from the address the request was sent to* (IP_PKTINFO): in DR/TUN
  the request is addressed to the VIP on ``lo``, and a reply from the RS's own address would be dropped by
  a connected client socket, as a real resolver would drop it.

Every connection has a socket timeout and the number of concurrent connections is capped, so a stuck or
hostile peer can neither hang the server nor make it spawn threads without bound.
"""

from __future__ import annotations

import argparse
import http.server
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

PERIOD = 251
# A multiple of the period, so every chunk of the body starts at phase 0 and one buffer serves any offset.
CHUNK = PERIOD * 261  # 65511 bytes
_PATTERN = bytes(i % PERIOD for i in range(CHUNK))
MAX_BULK = 1 << 34  # 16 GiB: a bound on what one request may ask for
MAX_CONNECTIONS = 512
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; the socket module does not always export it
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr;}


def pattern_chunks(n: int):
    """Yield the bulk body of ``n`` bytes (``i % 251``) as memoryviews of one shared buffer."""
    view = memoryview(_PATTERN)
    full, rest = divmod(n, CHUNK)
    for _ in range(full):
        yield view
    if rest:
        yield view[:rest]


def pattern_bytes(n: int) -> bytes:
    """The whole bulk body at once (tests and small sizes only)."""
    return b"".join(pattern_chunks(n))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # with Connection: close on every answer: one request per connection
    server_version = "pylvs-lab"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.conn_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def _head(self, code: int, length: int, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("X-Server", self.server.name)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _small(self, code: int, body: bytes) -> None:
        self._head(code, len(body))
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            ip, port = self.client_address[:2]
            self._small(200, f"{self.server.name} {ip}:{port}\n".encode())
        elif url.path == "/bulk":
            try:
                n = int(urllib.parse.parse_qs(url.query).get("bytes", ["0"])[0])
            except ValueError:
                n = -1
            if not 0 <= n <= MAX_BULK:
                self._small(400, b"bytes must be an integer in [0, 2**34]\n")
                return
            self._head(200, n, "application/octet-stream")
            for chunk in pattern_chunks(n):
                self.wfile.write(chunk)
        else:
            self._small(404, b"not found\n")

    def log_message(self, format: str, *args) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class HttpServer(socketserver.ThreadingTCPServer):
    # Not http.server.HTTPServer: its server_bind calls getfqdn(), a DNS lookup that can stall in a
    # namespace with no resolver.
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024  # the default 5 drops SYNs under a benchmark's concurrency

    def __init__(self, addr, name: str, conn_timeout: float, verbose: bool = False) -> None:
        self.name = name
        self.conn_timeout = conn_timeout
        self.verbose = verbose
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address) -> None:
        # A peer that resets mid-body is routine in a load-balancer lab: one line, not a traceback.
        exc = sys.exc_info()[1]
        print(f"servers: {client_address[0]}:{client_address[1]}: {exc!r}", file=sys.stderr)

    def process_request(self, request, client_address) -> None:
        # Cap the threads: past the limit, close at once rather than queue without bound.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class UdpEcho:
    """``b"<name> " + payload`` back to the sender, from the address it wrote to."""

    def __init__(self, port: int, name: str, host: str = "0.0.0.0") -> None:
        self.prefix = name.encode() + b" "
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)  # so serve() notices the stop event promptly
        self.answered = 0

    def serve(self, stop: threading.Event) -> None:
        anc_space = socket.CMSG_SPACE(_PKTINFO.size)
        while not stop.is_set():
            try:
                data, anc, _flags, peer = self.sock.recvmsg(65535, anc_space)
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():
                    return
                continue  # e.g. ECONNREFUSED from an earlier ICMP error: not fatal for an echo server
            cmsg = []
            for level, typ, val in anc:
                if level == socket.IPPROTO_IP and typ == IP_PKTINFO and len(val) >= _PKTINFO.size:
                    _ifindex, _spec, dst = _PKTINFO.unpack_from(val)
                    cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, dst, b"\0\0\0\0"))]
            reply = self.prefix + data[: 65507 - len(self.prefix)]
            try:
                self.sock.sendmsg([reply], cmsg, 0, peer)
                self.answered += 1
            except OSError:
                pass  # unroutable peer: nothing to do for an echo

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pylvs.lab.servers", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="server name, the first word of every answer")
    p.add_argument("--http-port", type=int, default=8080, help="TCP port (0: no HTTP server)")
    p.add_argument("--udp-port", type=int, default=5353, help="UDP port (0: no echo server)")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    p.add_argument("--conn-timeout", type=float, default=30.0, help="per-connection socket timeout, s")
    p.add_argument("--max-seconds", type=float, default=0.0, help="exit after this long (0: until SIGTERM)")
    p.add_argument("--verbose", action="store_true", help="log every HTTP request on stderr")
    a = p.parse_args(argv)
    if " " in a.name or not a.name:
        p.error("--name must be one non-empty word")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads: list[threading.Thread] = []
    httpd = udp = None
    try:
        if a.http_port:
            httpd = HttpServer((a.bind, a.http_port), a.name, a.conn_timeout, a.verbose)
            threads.append(threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                            name="http", daemon=True))
        if a.udp_port:
            udp = UdpEcho(a.udp_port, a.name, a.bind)
            threads.append(threading.Thread(target=udp.serve, args=(stop,), name="udp", daemon=True))
    except OSError as e:
        print(f"servers: cannot listen: {e}", file=sys.stderr)
        return 1
    for t in threads:
        t.start()
    print("ready", flush=True)
    deadline = time.monotonic() + a.max_seconds if a.max_seconds > 0 else None
    while not stop.wait(0.5):
        if deadline is not None and time.monotonic() >= deadline:
            break
    stop.set()
    if httpd is not None:
        httpd.shutdown()  # returns within poll_interval
        httpd.server_close()
    for t in threads:
        t.join(2.0)
    if udp is not None:
        udp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
