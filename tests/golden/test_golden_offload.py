"""Offload passthrough, byte-exact: a GSO super-frame with a partial checksum (what a veth or NIC with TSO hands
over with PACKET_VNET_HDR) rewritten once and forwarded whole, and cut into segments where it cannot be.

The expected frames are built here from field values (pylvs.testing, dpkt's checksums): a forwarded
super-frame must equal, once its partial checksum is finished, the frame the slow path would send for one
64 KB packet, and its checksum field must hold the new pseudo-header sum; cut up, it must give exactly the
segments the kernel's tcp_gso_segment would.
"""

from __future__ import annotations

import struct

import pytest

from golden_helpers import ACK, C_MAC, CIP, D0_MAC, D1_MAC, FIN, LIP, PSH, RIP, RS_MAC, VIP, fresh
from pylvs import native
from pylvs._pure.flowtable import CSUM_PARTIAL, DESC, GSO_TCPV4, GSO_UDP, GSO_UDP_L4
from pylvs.core.batch import Batch, GSO_ROOM
from pylvs.core.pipeline import Send
from pylvs.testing import tcp_frame, udp_frame
from test_golden_fastpath import CPORT, c2v, open_flow

MSS = 1448
DATA = bytes(range(256)) * 20  # 5120 bytes: 4 segments (3 x 1448 + 776)


def partial(frame: bytes) -> bytes:
    """The frame as the sending kernel hands it over with CHECKSUM_PARTIAL: the L4 checksum field holds the
    pseudo-header sum (RFC 793 §3.1), not the checksum."""
    f = bytearray(frame)
    l4 = 14 + (f[14] & 0x0F) * 4
    total = struct.unpack_from("!H", f, 16)[0]
    s = native.pseudo_header_sum(bytes(f[26:30]), bytes(f[30:34]), f[23], 14 + total - l4)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", f, l4 + (16 if f[23] == 6 else 6), s)
    return bytes(f)


def finished(frame: bytes) -> bytes:
    f = bytearray(frame)
    assert native.complete_checksum(f)
    return bytes(f)


def batch_of(frame: bytes, gso_type: int = GSO_TCPV4, gso_size: int = MSS) -> Batch:
    b = Batch(size=1, frame_room=GSO_ROOM)
    b.add(frame)
    off, ln = DESC.unpack_from(b.desc, 0)[:2]
    DESC.pack_into(b.desc, 0, off, ln, -1, 0, gso_size, gso_type, CSUM_PARTIAL)
    return b


@pytest.mark.parametrize("mode", ["nat", "fullnat", "dr"])
def test_super_frame_forwarded_whole_to_an_offload_port(mode):
    d = fresh(mode)
    c, rs = open_flow(d, mode)
    for name in d.fast.ifnames:
        d.fast.set_offload(name, True)
    q = dict(seq=1001, ack=5001, ident=0x1003, payload=DATA)
    b = batch_of(partial(c2v(ACK | PSH, **q)))
    assert d.handle_batch(b.buf, b.desc, 1, "eth0", 10.5) == []  # nothing punted
    off, ln, verdict, reason, gso_size, gso_type, flags = DESC.unpack_from(b.desc, 0)
    assert d.fast.ifnames[verdict] == "eth1" and (gso_size, gso_type, flags) == (MSS, GSO_TCPV4, CSUM_PARTIAL)
    out = bytes(b.buf[off:off + ln])
    want = {
        "nat": tcp_frame(D1_MAC, RS_MAC[rs], CIP, RIP[rs], CPORT, 8080, ACK | PSH, ttl=63, **q),
        "fullnat": tcp_frame(D1_MAC, RS_MAC[rs], LIP, RIP[rs], c.lport, 8080, ACK | PSH, ttl=63, **q),
        "dr": tcp_frame(D1_MAC, RS_MAC[rs], CIP, VIP, CPORT, 80, ACK | PSH, ttl=64, **q),
    }[mode]
    # Still partial: the checksum field is the rewritten frame's pseudo-header sum (the kernel or the NIC
    # finishes it over the new ports and the payload), everything else is the slow path's frame exactly.
    assert out == partial(want)
    assert finished(out) == want
    # The virtio-net header it goes out with: segment the TCP payload by 1448, checksum from the TCP header.
    hdr = native.desc_to_vnet(flags, gso_type, gso_size, out)
    assert hdr == struct.pack("=BBHHHH", 1, GSO_TCPV4, 14 + 20 + 20, MSS, 34, 16)
    # Counted once, as IPVS counts one skb.
    assert d.stats()["fast_path"]["forwarded"] == 1


def test_super_frame_cut_up_where_it_cannot_pass_whole():
    """No virtio-net header on the egress (the default until the runner says otherwise): the fast path
    punts it (reason gso), and the slow path gets, and forwards, the kernel's own segments."""
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    q = dict(seq=1001, ack=5001, ident=0x1003)
    b = batch_of(partial(c2v(ACK | PSH, payload=DATA, **q)))
    acts = dict(d.handle_batch(b.buf, b.desc, 1, "eth0", 10.5))
    sends = [a for a in acts[0] if isinstance(a, Send)]
    n = -(-len(DATA) // MSS)
    want = [tcp_frame(D1_MAC, RS_MAC[rs], CIP, RIP[rs], CPORT, 8080,
                      ACK | (PSH if i == n - 1 else 0), ttl=63, seq=1001 + i * MSS, ack=5001, ident=0x1003 + i,
                      payload=DATA[i * MSS:(i + 1) * MSS]) for i in range(n)]
    assert [(s.interface, bytes(s.frame)) for s in sends] == [("eth1", w) for w in want]
    assert d.events["gso_segmented"] == 1 and d.events["gso_segments"] == n
    assert d.fast.table.stats()["punt_gso"] == 1


def test_segments_are_the_kernels():
    """gso_segment alone: TCP (FIN and PSH on the last segment only, CWR on the first only, sequence and IP ID
    advancing) and USO (a UDP datagram per segment); UFO is refused."""
    f = partial(tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, ACK | PSH | FIN | 0x80, seq=0xFFFFF000, ack=7,
                          ident=0xFFFE, payload=DATA))
    segs = native.gso_segment(f, GSO_TCPV4, MSS)
    n = -(-len(DATA) // MSS)
    assert [bytes(s) for s in segs] == [
        tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80,
                  ACK | (0x80 if i == 0 else 0) | (PSH | FIN if i == n - 1 else 0),
                  seq=(0xFFFFF000 + i * MSS) & 0xFFFFFFFF, ack=7, ident=(0xFFFE + i) & 0xFFFF,
                  payload=DATA[i * MSS:(i + 1) * MSS]) for i in range(n)]
    u = partial(udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, DATA[:3000], ident=9))
    useg = native.gso_segment(u, GSO_UDP_L4, 1400)
    assert [bytes(s) for s in useg] == [udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, DATA[:3000][i:i + 1400], ident=9 + k)
                                        for k, i in enumerate(range(0, 3000, 1400))]
    assert native.gso_segment(u, GSO_UDP, 1400) is None  # UFO: IP fragments, not ours to make
    assert native.gso_segment(f, GSO_UDP_L4, 1400) is None  # the type does not match the protocol
    assert native.gso_segment(f[:60], GSO_TCPV4, MSS) is None  # shorter than its IP total length


def test_virtio_net_header_read():
    """What the kernel's header says, into descriptor fields: partial where the fast path looks for it; a
    partial checksum anywhere else is finished on the spot; a super-frame without one is refused."""
    f = bytearray(partial(tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, ACK, payload=DATA)))
    hdr = struct.pack("=BBHHHH", 1, GSO_TCPV4, 54, MSS, 34, 16)
    assert native.vnet_to_desc(hdr, f) == (CSUM_PARTIAL, GSO_TCPV4, MSS)
    assert native.vnet_to_desc(struct.pack("=BBHHHH", 2, 0, 0, 0, 0, 0), f) == (2, 0, 0)  # DATA_VALID
    assert native.vnet_to_desc(struct.pack("=BBHHHH", 0, GSO_TCPV4, 54, MSS, 0, 0), f) is None
    g = bytearray(f)
    assert native.vnet_to_desc(struct.pack("=BBHHHH", 1, 0, 0, 0, 30, 4), g) == (0, 0, 0)
    assert g[:34] == f[:34] and g[38:] == f[38:] and g[34:36] != f[34:36]  # the sum lands at 30 + 4
