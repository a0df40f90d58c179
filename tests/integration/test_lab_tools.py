"""The lab tools (servers, client, sniff) and the TUN-mode decapsulator, in two throwaway namespaces.

Topology: ``pl-t-S-a`` eth0 198.18.0.1/24 ── veth ── eth0 198.18.0.2/24 ``pl-t-S-b`` (VIP 198.18.0.100/32 on
B's lo).  Nothing is sent outside these namespaces.  The ``decap`` tests at the top need no privileges.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylvs.io.tundecap import DROP_REASONS, decap
from pylvs.lab.netns import file_tail, set_sysctls, wait_ready
from pylvs.lab.servers import CHUNK, pattern_bytes, pattern_chunks
from pylvs.native import checksum, pseudo_header_sum
from pylvs.testing import ip4, ip_payload, udp_frame

A_IP, B_IP, VIP = "198.18.0.1", "198.18.0.2", "198.18.0.100"
VIPS = {socket.inet_aton(VIP)}
READY_TIMEOUT = 15.0


# -- packets (pylvs.testing and dpkt fill in lengths and checksums) -------------------------------------

def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> bytes:
    """An IPv4 packet around ``payload`` taken as it is (the outer header of IPIP, or a broken inner one)."""
    return bytes(dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=proto, id=ident, ttl=64, data=payload))


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    mac = "02:00:00:00:00:01"  # dropped with the Ethernet header
    return ip_payload(udp_frame(mac, mac, src, dst, sport, dport, payload))


def ipip(inner: bytes, outer_src: str = A_IP, outer_dst: str = B_IP) -> bytes:
    return ipv4(outer_src, outer_dst, 4, inner, ident=2)


INNER = udp4(A_IP, VIP, 40000, 53, b"hello")


# -- decap: pure, no privileges -----------------------------------------------------------------------

def test_builders_make_valid_checksums():
    assert checksum(INNER[:20]) == 0 and checksum(ipip(INNER)[:20]) == 0
    assert checksum(INNER[20:], pseudo_header_sum(ip4(A_IP), ip4(VIP), 17, len(INNER) - 20)) == 0
    assert len(ipip(INNER)) == 20 + len(INNER) and ipip(INNER)[9] == 4


def test_decap_returns_inner_packet():
    assert decap(ipip(INNER), VIPS) == INNER


def test_decap_cuts_padding():
    assert decap(ipip(INNER) + b"\0" * 6, VIPS) == INNER  # Ethernet padding after the outer packet
    padded_inner = INNER + b"\0" * 3  # bytes inside the outer packet but past the inner total length
    assert decap(ipip(padded_inner), VIPS) == INNER


@pytest.mark.parametrize("packet,reason", [
    (b"", "truncated"),
    (b"\x45", "truncated"),
    (ipip(INNER)[:19], "truncated"),
    (b"\x60" + bytes(39), "not_ipv4"),  # IPv6
    (b"\x46" + ipip(INNER)[1:], "inner_not_ipv4"),  # IHL 24: the "inner" starts 4 bytes late
    (b"\x44" + ipip(INNER)[1:], "truncated"),  # IHL below 5
    (ipip(INNER)[:30], "truncated"),  # total length says more than we have
    (INNER, "not_ipip"),  # plain UDP
    (ipv4(A_IP, B_IP, 4, b""), "truncated"),  # IPIP with no inner packet
    (ipv4(A_IP, B_IP, 4, b"\x60" + bytes(39)), "inner_not_ipv4"),
    (ipv4(A_IP, B_IP, 4, INNER[:12]), "truncated"),
    (ipv4(A_IP, B_IP, 4, INNER[:2] + b"\x05\xdc" + INNER[4:]), "truncated"),  # inner total length 1500
    (ipip(udp4(A_IP, "198.18.0.99", 40000, 53, b"x")), "not_for_vip"),
])
def test_decap_drop_reasons(packet, reason):
    assert decap(packet, VIPS) == reason
    assert reason in DROP_REASONS


def test_decap_outer_fragment_is_truncated():
    pkt = bytearray(ipip(INNER))
    pkt[6:8] = b"\x20\x00"  # MF: the rest of the inner packet is elsewhere
    assert decap(bytes(pkt), VIPS) == "truncated"


def test_decap_never_raises_on_random_bytes():
    rnd = secrets.SystemRandom()
    for _ in range(3000):
        pkt = bytearray(os.urandom(rnd.randrange(0, 80)))
        if pkt and rnd.random() < 0.5:
            pkt[0] = 0x45  # most of them look like IPv4, to get past the first check
        if len(pkt) > 9 and rnd.random() < 0.5:
            pkt[9] = 4
        out = decap(bytes(pkt), VIPS)
        assert isinstance(out, bytes) or out in DROP_REASONS


@given(st.binary(max_size=120), st.integers(0, 119), st.binary(max_size=4))
def test_decap_total_on_mutated_packets(tail, pos, junk):
    pkt = bytearray(ipip(INNER) + tail)
    pkt[pos:pos + len(junk)] = junk
    out = decap(bytes(pkt), VIPS)
    assert isinstance(out, bytes) or out in DROP_REASONS
    if isinstance(out, bytes):
        assert out[16:20] in VIPS and len(out) >= 20


def test_pattern_chunks():
    for n in (0, 1, 250, 251, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17):
        body = pattern_bytes(n)
        assert body == bytes(i % 251 for i in range(n))
        assert sum(len(c) for c in pattern_chunks(n)) == n


# -- two namespaces ----------------------------------------------------------------------------------

def _no_netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create network namespaces"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed"
    if shutil.which("ip") is None:
        return "no `ip` binary to run processes inside namespaces"
    return None


class TwoNs:
    """Two namespaces joined by one veth pair, and the processes started in them (stdout a pipe, read with
    pylvs.lab.netns.wait_ready; stderr to a log file, never an undrained pipe)."""

    def __init__(self) -> None:
        s = secrets.token_hex(3)
        self.a, self.b = f"pl-t-{s}-a", f"pl-t-{s}-b"
        self.procs: list[subprocess.Popen] = []
        self.created: list[str] = []
        self.logdir = tempfile.mkdtemp(prefix=f"pylvs-t-{s}-")
        self.logs: dict[int, str] = {}  # pid -> stderr log

    def build(self) -> None:
        from pyroute2 import NetNS, netns

        for name in (self.a, self.b):
            self.created.append(name)  # before create: a half-made one must still be removed
            netns.create(name)
        with NetNS(self.a, flags=0) as a:
            a.link("add", ifname="eth0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": self.b})
        # IPv6 off before the links come up (no DAD/RS noise in captures); rp_filter off in B, as a TUN-mode
        # real server needs (the lab's job, not tundecap's).
        no_v6 = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}
        set_sysctls(self.a, no_v6)
        set_sysctls(self.b, {**no_v6, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0})
        for name, addr in ((self.a, A_IP), (self.b, B_IP)):
            with NetNS(name, flags=0) as ns:
                lo, eth = ns.link_lookup(ifname="lo")[0], ns.link_lookup(ifname="eth0")[0]
                ns.addr("add", index=eth, address=addr, prefixlen=24)
                ns.link("set", index=lo, state="up")
                ns.link("set", index=eth, state="up")
                if name == self.b:
                    ns.addr("add", index=lo, address=VIP, prefixlen=32)

    def popen(self, ns: str, pyargs: list[str]) -> subprocess.Popen:
        path = os.path.join(self.logdir, f"{len(self.logs)}-{ns}.stderr")
        with open(path, "wb") as errf:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *pyargs], text=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)
        self.logs[proc.pid] = path
        self.procs.append(proc)
        return proc

    def stderr(self, proc: subprocess.Popen) -> str:
        return file_tail(self.logs[proc.pid], 1 << 20)

    def run(self, ns: str, pyargs: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, *pyargs], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def client(self, *args: str, timeout: float = 60) -> dict:
        res = self.run(self.a, ["-m", "pylvs.lab.client", *args], timeout=timeout)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def wait_ready(self, proc: subprocess.Popen, timeout: float = READY_TIMEOUT) -> None:
        wait_ready(proc, timeout, tail=lambda: file_tail(self.logs[proc.pid]))

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
        """SIGTERM, then its stdout (what followed "ready") and its whole stderr."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            raise AssertionError(f"{proc.args} ignored SIGTERM for {timeout} s: "
                                 f"{file_tail(self.logs[proc.pid])}") from None
        return out, self.stderr(proc)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=5)
            except (subprocess.TimeoutExpired, ValueError):
                pass
        self.procs.clear()

    def destroy(self) -> None:
        from pyroute2 import netns

        self.stop_all()
        for name in self.created:  # removing a namespace deletes the veth pair with it
            try:
                netns.remove(name)
            except OSError:
                pass
        self.created.clear()
        shutil.rmtree(self.logdir, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_ns():
    reason = _no_netns_reason()
    if reason:
        pytest.skip(reason)
    lab = TwoNs()
    try:
        try:
            lab.build()
        except Exception as e:  # noqa: BLE001 (any failure here means: this host cannot run the test)
            pytest.skip(f"cannot build the namespace pair: {type(e).__name__}: {e}")
        yield lab
    finally:
        lab.destroy()


@pytest.fixture
def ns2(lab_ns):
    try:
        yield lab_ns
    finally:
        lab_ns.stop_all()  # whatever a test started dies with it, pass or fail


def start_servers(lab: TwoNs, *args: str) -> subprocess.Popen:
    proc = lab.popen(lab.b, ["-m", "pylvs.lab.servers", "--name", "rsb", *args])
    lab.wait_ready(proc)
    return proc


def test_servers_and_client(ns2):
    srv = start_servers(ns2, "--http-port", "8080", "--udp-port", "5353")
    http = ns2.client("http", "--host", B_IP, "--port", "8080", "--count", "20", "--timeout", "5")
    assert http["ok"] == 20, http
    assert http["by_server"] == {"rsb": 20}
    assert http["errors"] == []
    assert len(http["peers"]["rsb"]) == 3 and all(p.startswith(A_IP + ":") for p in http["peers"]["rsb"])
    assert len(set(http["peers"]["rsb"])) == 3  # a new connection (source port) each time

    bulk = ns2.client("bulk", "--host", B_IP, "--port", "8080", "--bytes", "2000000", "--timeout", "30")
    assert bulk["ok"], bulk
    assert bulk["bytes"] == 2_000_000 and bulk["sha256"] == bulk["expected_sha256"]
    assert bulk["server"] == "rsb" and bulk["gbps"] > 0

    udp = ns2.client("udp", "--host", B_IP, "--port", "5353", "--count", "10", "--timeout", "2")
    assert udp["ok"] == 10 and udp["lost"] == 0 and udp["by_server"] == {"rsb": 10}, udp

    _, err = ns2.stop(srv)
    assert srv.returncode == 0, err


def test_client_reports_failures_in_json(ns2):
    # Nothing listens on 8081 / 5354 in B: refused and lost, reported, not raised.
    http = ns2.client("http", "--host", B_IP, "--port", "8081", "--count", "3", "--timeout", "2")
    assert http["ok"] == 0 and len(http["errors"]) == 3 and "Refused" in http["errors"][0]
    udp = ns2.client("udp", "--host", B_IP, "--port", "5354", "--count", "2", "--timeout", "0.5")
    assert udp["ok"] == 0 and udp["lost"] == 2
    bulk = ns2.client("bulk", "--host", B_IP, "--port", "8081", "--bytes", "1000", "--timeout", "2")
    assert not bulk["ok"] and "error" in bulk


def test_sniff_captures_syn(ns2, tmp_path):
    start_servers(ns2, "--http-port", "8080", "--udp-port", "5353")
    pcap = tmp_path / "b.pcap"
    sniff = ns2.popen(ns2.b, ["-m", "pylvs.lab.sniff", "--iface", "eth0", "--out", str(pcap), "--seconds", "30",
                              "--max", "1000", "--tcp-port", "8080"])
    ns2.wait_ready(sniff)
    ns2.client("udp", "--host", B_IP, "--port", "5353", "--count", "2", "--timeout", "2")  # filtered out
    assert ns2.client("http", "--host", B_IP, "--port", "8080", "--count", "1", "--timeout", "5")["ok"] == 1
    out, err = ns2.stop(sniff)
    assert sniff.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["frames"] >= 5  # SYN, SYN-ACK, ACK, request, answer, FINs

    with open(pcap, "rb") as f:
        frames = [(ts, dpkt.ethernet.Ethernet(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    assert len(frames) == summary["frames"]
    now = time.time()
    assert all(abs(now - ts) < 120 for ts, _ in frames)  # real (kernel) timestamps
    segs = [e.data.data for _, e in frames]
    assert all(isinstance(s, dpkt.tcp.TCP) and 8080 in (s.sport, s.dport) for s in segs)
    syns = [(e, s) for (_, e), s in zip(frames, segs)
            if s.flags & dpkt.tcp.TH_SYN and not s.flags & dpkt.tcp.TH_ACK and s.dport == 8080]
    assert len(syns) == 1
    assert socket.inet_ntoa(syns[0][0].data.src) == A_IP


def test_sniff_stops_by_itself(ns2, tmp_path):
    pcap = tmp_path / "idle.pcap"
    t0 = time.monotonic()
    res = ns2.run(ns2.b, ["-m", "pylvs.lab.sniff", "--iface", "eth0", "--out", str(pcap), "--seconds", "1"],
                  timeout=20)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 15
    assert res.stdout.splitlines()[0] == "ready"
    with open(pcap, "rb") as f:
        assert json.loads(res.stdout.splitlines()[-1])["frames"] == len(list(dpkt.pcap.Reader(f)))
    bad = ns2.run(ns2.b, ["-m", "pylvs.lab.sniff", "--iface", "nosuch0", "--out", str(pcap)], timeout=20)
    assert bad.returncode == 1 and "nosuch0" in bad.stderr


SENDER = r"""
import json, socket, sys
# Listen where the decapsulated request's answer comes back (A owns 198.18.0.1), then send the
# hand-built outer packets with a raw IPPROTO_RAW socket (IP_HDRINCL implied).
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("198.18.0.1", 40000))
rx.settimeout(float(sys.argv[1]))
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for pkt in sys.argv[2:]:
    tx.sendto(bytes.fromhex(pkt), ("198.18.0.2", 0))
answers = []
try:
    for _ in range(4):  # bounded: at most 4 answers; after the first, wait briefly for unwanted extras
        data, src = rx.recvfrom(2048)
        answers.append([data.decode(errors="replace"), src[0], src[1]])
        rx.settimeout(0.5)
except socket.timeout:
    pass
print(json.dumps(answers))
"""


def test_tundecap_delivers_inner_packet(ns2):
    start_servers(ns2, "--http-port", "0", "--udp-port", "53")
    dec = ns2.popen(ns2.b, ["-c", "import sys; from pylvs.io.tundecap import main; sys.exit(main(sys.argv[1:]))",
                            "--vip", VIP, "--dev", "pl-decap"])
    ns2.wait_ready(dec)
    wrong_vip = ipip(udp4(A_IP, "198.18.0.99", 40000, 53, b"not-for-us"))
    res = ns2.run(ns2.a, ["-c", SENDER, "2", wrong_vip.hex(), ipip(INNER).hex()], timeout=30)
    assert res.returncode == 0, res.stderr
    answers = json.loads(res.stdout)
    _, err = ns2.stop(dec)
    assert dec.returncode == 0, err
    # the real server answered from the VIP, straight to the client (not through any tunnel)
    assert answers == [["rsb hello", VIP, 53]], (answers, err)
    assert "tun-decap started" in err
    counters = json.loads(err.split("tun-decap stopped: ", 1)[1].splitlines()[0])
    assert counters["rx"] == 2 and counters["decapsulated"] == 1, counters
    assert counters["drop_not_for_vip"] == 1 and counters["tun_write_errors"] == 0, counters


def test_tundecap_refuses_a_leftover_persistent_device(ns2):
    """IFF_TUN_EXCL: a persistent TUN device of that name is refused (exit 2, one line), never attached to."""
    ip = ["ip", "-n", ns2.b]
    subprocess.run([*ip, "tuntap", "add", "dev", "pl-left", "mode", "tun"], check=True, timeout=10)
    try:
        res = ns2.run(ns2.b, ["-m", "pylvs", "rs", "tun-decap", "--vip", VIP, "--dev", "pl-left"], timeout=30)
        assert res.returncode == 2 and res.stdout == "", res
        assert "Traceback" not in res.stderr
        assert "TUN pl-left: the name 'pl-left' is already in use by another TUN/TAP device" in res.stderr
        flags = subprocess.run([*ip, "-d", "link", "show", "pl-left"], capture_output=True, text=True,
                               timeout=10, check=True).stdout
        assert "persist" in flags.split("tun type tun", 1)[1]  # still the leftover, untouched
    finally:
        subprocess.run([*ip, "link", "del", "pl-left"], timeout=10, check=False)
