"""Real traffic through a real pylvs process, in every mode and both interface kinds.

Each case builds a throwaway namespace lab (pylvs/lab/netns.py: client, director, gateway, three real
servers with HTTP and UDP echo servers), starts ``pylvs run --config examples/<mode>.toml --host-setup`` in
the director namespace, and from the client sends: 200 HTTP requests on separate connections, UDP
echoes, and a 10 MB download whose hash is checked.  Every step is bounded in count and time; the lab is
removed even on failure.
"""

from __future__ import annotations

import pathlib
import signal
import sys
import time

import dpkt
import pytest

from pylvs.lab.demo import LiveLab, config_for
from pylvs.lab.netns import Lab, have_netadmin

ROOT = pathlib.Path(__file__).resolve().parents[2]
EX = ROOT / "examples"
VIP = "198.18.0.100"
CLIENT = "198.18.0.10"
LIP = "198.19.0.250"
N_HTTP = 200
BULK = 10_000_000

_reason = have_netadmin()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"network namespaces unavailable: {_reason}")

CASES = [("nat", "afpacket"), ("dr", "afpacket"), ("tun", "afpacket"), ("fullnat", "afpacket"),
         ("nat", "tap"), ("fullnat", "tap")]


def _toa_options(pcap: pathlib.Path, rs_port: int) -> list[tuple[bytes, int, bytes]]:
    """(source address, TOA client port, TOA client address) of every TCP segment carrying a TOA option."""
    out = []
    with open(pcap, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            if ip.data.dport != rs_port:
                continue
            for kind, data in dpkt.tcp.parse_opts(ip.data.opts):
                if kind == 254 and len(data) == 6:
                    out.append((ip.src, int.from_bytes(data[:2], "big"), data[2:]))
    return out


@pytest.mark.parametrize("mode,driver", CASES, ids=[f"{m}-{d}" for m, d in CASES])
def test_live_traffic(mode, driver, tmp_path, pylvs_impl):
    t0 = time.monotonic()
    with Lab(mode, driver) as lab:
        http_port, _ = lab.rs_ports
        live = LiveLab(lab, config_for(EX, mode, driver), tmp_path)
        sniff = None
        if mode == "fullnat":
            sniff = lab.popen("rs1", [sys.executable, "-m", "pylvs.lab.sniff", "--iface", "eth0", "--out",
                                      str(tmp_path / "rs1.pcap"), "--seconds", "60", "--max", "20000",
                                      "--tcp-port", str(http_port)], stdout=-1, text=True)
            lab.wait_ready(sniff, 10)
        live.start()
        try:
            http = live.client("http", "--host", VIP, "--port", "80", "--count", str(N_HTTP), "--timeout", "5")
            udp = live.client("udp", "--host", VIP, "--port", "53", "--count", "30", "--timeout", "2")
            bulk = live.client("bulk", "--host", VIP, "--port", "80", "--bytes", str(BULK), "--timeout", "60",
                               timeout=90)
        finally:
            stats = live.stop()
            if sniff is not None:
                sniff.send_signal(signal.SIGTERM)
                sniff.wait(10)

        # 200 requests, each its own connection, all answered with the right body.
        assert http["ok"] == N_HTTP, (http["errors"], live.log()[-3000:])
        # wrr 1:1:2 (examples): over a window of sum(weights) picks each server gets exactly its weight.
        got = [http["by_server"].get(f"rs{n}", 0) for n in (1, 2, 3)]
        assert all(abs(g - w) <= 1 for g, w in zip(got, (50, 50, 100))), got
        # UDP echo round-trips; rr spreads new flows evenly (each echo is a new socket, a new flow).
        assert udp["ok"] == 30 and udp["lost"] == 0 and udp["source_ports"] == 30, udp
        assert sorted(udp["by_server"].values()) in ([10, 10, 10],), udp
        # 10 MB arrives intact.
        assert bulk["ok"] and bulk["bytes"] == BULK and bulk["sha256"] == bulk["expected_sha256"], bulk

        # pylvs's own counters agree with what the client saw.
        tcp_svc = next(s for s in stats["services"] if s["service"].startswith("TCP"))
        assert sum(r["conns"] for r in tcp_svc["real_servers"]) == N_HTTP + 1
        assert not stats["drops"].get("internal_error")
        # The established flows went through the fast path of the implementation under test: at least the
        # bulk flow's client segments (hundreds of ACKs even in DR/TUN, where only that half crosses us).
        fp = stats["fast_path"]
        assert fp["implementation"] == pylvs_impl and fp["forwarded"] > 200, fp

        peers = http["peers"]["rs1"]
        if mode == "fullnat":
            # The server sees a LIP as its peer, and the TOA option carries the client's address.
            assert all(p.split(":")[0] == LIP for p in peers), peers
            toas = _toa_options(tmp_path / "rs1.pcap", http_port)
            assert len(toas) >= http["by_server"]["rs1"], len(toas)
            assert {src for src, _, _ in toas} == {bytes([198, 19, 0, 250])}
            assert {addr for _, _, addr in toas} == {bytes([198, 18, 0, 10])}
            assert all(1024 <= port <= 65535 for _, port, _ in toas)
        else:
            # NAT, DR and TUN keep the client's address.
            assert all(p.split(":")[0] == CLIENT for p in peers), peers
        if mode == "dr":
            r = lab.run("rs1", ["sh", "-c", "cat /proc/sys/net/ipv4/conf/all/arp_ignore "
                                "/proc/sys/net/ipv4/conf/all/arp_announce; ip -4 -o addr show dev lo"],
                        timeout=5)
            assert r.stdout.split()[:2] == ["1", "2"] and f"{VIP}/32" in r.stdout
        if mode == "tun":
            # Every IPIP packet pylvs sent went into the servers' decapsulators, none elsewhere.
            assert all(r["pkts_in"] > 0 for r in tcp_svc["real_servers"])
    assert time.monotonic() - t0 < 120


def _as_someone_elses_lab(text: str) -> str:
    """The README's recipe for a foreign lab: no `mac` lines, no static neighbours (ARP finds them)."""
    import re

    text = re.sub(r"(?m)^\[\[neighbor\]\]\n(?:[a-z_]+ *=.*\n)+", "", text)
    text = re.sub(r"(?m)^mac *=.*\n", "", text)
    assert "neighbor" not in text.replace("neighbours", "").replace("neighbour", "") and "\nmac" not in text
    return text


@pytest.mark.parametrize("mode", ["nat", "dr", "fullnat"])
def test_example_without_macs_or_neighbours(mode, tmp_path):
    """pylvs uses the devices' MACs and resolves clients and servers by ARP."""
    cfg = tmp_path / f"{mode}.toml"
    cfg.write_text(_as_someone_elses_lab((EX / f"{mode}.toml").read_text()))
    with Lab(mode) as lab:
        live = LiveLab(lab, cfg, tmp_path)
        live.start()
        try:
            http = live.client("http", "--host", VIP, "--port", "80", "--count", "40", "--timeout", "5")
            udp = live.client("udp", "--host", VIP, "--port", "53", "--count", "9", "--timeout", "2")
        finally:
            stats = live.stop()
    assert http["ok"] == 40, http["errors"]
    assert [http["by_server"].get(f"rs{n}", 0) for n in (1, 2, 3)] == [10, 10, 20]
    assert udp["ok"] == 9 and sorted(udp["by_server"].values()) == [3, 3, 3]
    assert stats["events"]["arp_requests"] >= 1, stats["events"]  # next hops were resolved by ARP
    assert "neighbor_unresolved" not in stats["drops"], stats["drops"]


OFFLOAD_CASES = [("nat", "afpacket"), ("fullnat", "afpacket"), ("dr", "afpacket"), ("tun", "afpacket"),
                 ("nat", "tap"), ("fullnat", "tap")]


@pytest.mark.parametrize("mode,driver", OFFLOAD_CASES, ids=[f"{m}-{d}" for m, d in OFFLOAD_CASES])
def test_live_offload_passthrough(mode, driver, tmp_path, pylvs_impl):
    """The lab with the kernel's own TSO/GSO/GRO on every veth (what a VM or container host has): the
    servers hand their veth 64 KB super-frames.  pylvs takes them whole (PACKET_VNET_HDR, or a TAP with
    IFF_VNET_HDR and TUNSETOFFLOAD), rewrites each once and hands it back whole, so the 10 MB download
    crosses in super-frames — and arrives intact."""
    with Lab(mode, driver, offloads=True) as lab:
        live = LiveLab(lab, config_for(EX, mode, driver), tmp_path)
        live.start()
        try:
            http = live.client("http", "--host", VIP, "--port", "80", "--count", "20", "--timeout", "5")
            bulk = live.client("bulk", "--host", VIP, "--port", "80", "--bytes", str(BULK), "--timeout", "60",
                               timeout=90)
        finally:
            stats = live.stop()
        assert http["ok"] == 20, (http["errors"], live.log()[-3000:])
        assert bulk["ok"] and bulk["bytes"] == BULK and bulk["sha256"] == bulk["expected_sha256"], bulk
        assert not stats["drops"].get("internal_error")
        ports = stats["ports"].values()
        assert sum(p.get("rx_gso_bad", 0) for p in ports) == 0
        if mode in ("nat", "fullnat"):
            # The download's data came from the servers as super-frames and left toward the client whole.
            rx_gso, tx_gso = sum(p.get("rx_gso", 0) for p in ports), sum(p.get("tx_gso", 0) for p in ports)
            assert rx_gso > 0 and tx_gso > 0, (stats["ports"], live.log()[-2000:])
            # Far fewer frames than the 10 MB would take at 1448 bytes each: most crossed as super-frames.
            assert sum(p["tx_frames"] for p in ports) < 2 * BULK // 1448, stats["ports"]
        # Whatever was cut up in software was counted: super-frames the fast path punted (a flow's first data
        # before it is handed over, a FIN riding on data), each into at least one segment — a handful, not
        # the stream.
        ev = stats["events"]
        assert ev.get("gso_segments", 0) >= ev.get("gso_segmented", 0), ev
        assert ev.get("gso_segmented", 0) <= 3 * 21, ev
