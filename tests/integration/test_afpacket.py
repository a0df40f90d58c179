"""The AF_PACKET adapter on a real veth pair, in namespaces this test creates.

Checks what a naive forwarder gets wrong: partial (offloaded) checksums are completed, the kernel-side BPF
filter passes only our addresses, and our own transmissions never come back to us.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_NET_ADMIN) for network namespaces")

A_MAC, B_MAC = "02:00:00:00:0a:01", "02:00:00:00:0b:01"

PORT_SCRIPT = textwrap.dedent("""
    import json, socket, sys, time
    from pylvs.config import Interface
    from pylvs.io.afpacket import AfPacketPort
    from pylvs.testing import ip4, udp_frame
    port = AfPacketPort.open(Interface(name="eth0", mac=None, addresses=()))
    port.start([ip4("198.18.0.2")], [ip4("198.18.0.9")])
    print("ready", flush=True)
    seen = []
    deadline = time.monotonic() + 3
    sent = False
    while time.monotonic() < deadline and len(seen) < 50:
        for f in port.recv_batch(16):
            seen.append(f.hex())
        if len(seen) >= 2 and not sent:
            # One frame out, from an address the filter passes (src 198.18.0.9): A's UDP socket must get
            # it, and we must not see it come back as PACKET_OUTGOING.
            port.send(udp_frame(port.mac, bytes.fromhex("%s".replace(":", "")), "198.18.0.2",
                                "198.18.0.1", 53, 40001, b"pong"))
            # And one sent by this host's own stack from an address the filter passes (src 198.18.0.9):
            # an ETH_P_ALL socket would get it back as PACKET_OUTGOING without the protections.
            k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            k.bind(("198.18.0.9", 53)); k.sendto(b"kpong", ("198.18.0.1", 40001)); k.close()
            sent = True
        time.sleep(0.02)
    print(json.dumps({"mac": port.mac.hex(":"), "frames": seen, "counters": dict(port.counters)}))
    port.close()
""" % A_MAC)

SENDER_SCRIPT = textwrap.dedent("""
    import socket, sys
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("198.18.0.1", 40001)); u.settimeout(3)
    u.sendto(b"ping", ("198.18.0.2", 53))
    u.sendto(b"filtered", ("198.18.0.3", 53))
    t = socket.socket(); t.settimeout(0.3)
    try:
        t.connect(("198.18.0.2", 80))
    except OSError:
        pass
    got = []
    for _ in range(2):
        data, addr = u.recvfrom(100)
        got.append(data.decode() + "@" + addr[0])
    print(" ".join(sorted(got)))
""")


@pytest.fixture
def veth_pair():
    from pyroute2 import NetNS, netns

    sfx = os.urandom(3).hex()
    a, b = f"pl-ta-{sfx}", f"pl-tb-{sfx}"
    try:
        na, nb = NetNS(a, flags=os.O_CREAT), NetNS(b, flags=os.O_CREAT)
        na.link("add", ifname="eth0", kind="veth", peer={"ifname": "eth0", "net_ns_fd": b})
        ia = na.link_lookup(ifname="eth0")[0]
        ib = nb.link_lookup(ifname="eth0")[0]
        na.link("set", index=ia, address=A_MAC, state="up")
        nb.link("set", index=ib, address=B_MAC, state="up")
        na.addr("add", index=ia, address="198.18.0.1", prefixlen=24)
        for ip in ("198.18.0.2", "198.18.0.3"):
            na.neigh("add", dst=ip, lladdr=B_MAC, ifindex=ia, state=0x80)  # NUD_PERMANENT
        nb.addr("add", index=ib, address="198.18.0.9", prefixlen=24)
        nb.neigh("add", dst="198.18.0.1", lladdr=A_MAC, ifindex=ib, state=0x80)
        na.close()
        nb.close()
        yield a, b
    finally:
        for n in (a, b):
            try:
                netns.remove(n)
            except OSError:
                pass


def test_partial_checksums_filter_and_no_echo_of_own_frames(veth_pair):
    import dpkt

    from pylvs.native import checksum, pseudo_header_sum

    a, b = veth_pair
    port = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", PORT_SCRIPT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([port.stdout], [], [], 10)
        assert ready and port.stdout.readline().strip() == "ready"
        sender = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", SENDER_SCRIPT],
                                capture_output=True, text=True, timeout=10)
        out, err = port.communicate(timeout=10)
    finally:
        port.kill()
    assert sender.returncode == 0, sender.stderr
    # What the port sent and what B's stack sent both reached A.
    assert sender.stdout.split() == ["kpong@198.18.0.9", "pong@198.18.0.2"]
    res = json.loads(out)
    assert res["mac"] == B_MAC  # no MAC in the config: the device's own
    ips = [dpkt.ethernet.Ethernet(bytes.fromhex(h)).data for h in res["frames"]]
    assert {ip.dst for ip in ips} == {bytes([198, 18, 0, 2])}, "only frames for the filter's address pass"
    protos = sorted(ip.p for ip in ips)
    assert 6 in protos and 17 in protos  # the SYN (possibly retried) and the UDP ping
    for ip in ips:
        seg = bytes(ip.data)
        assert checksum(seg, pseudo_header_sum(ip.src, ip.dst, ip.p, len(seg))) == 0
    c = res["counters"]
    assert c["rx_csum_partial"] >= 2, c  # veth offloads TX checksums: the kernel gave partial ones (recv_batch
    # finished them: the checksums above verify)
    assert c["tx_frames"] == 1
    assert c["rx_frames"] == len(res["frames"])
    assert not any(ip.src == bytes([198, 18, 0, 9]) for ip in ips), "the host's own frame came back"
    assert c.get("rx_outgoing_ignored", 0) == 0  # stopped in the kernel, not in Python
