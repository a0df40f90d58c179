"""Golden TUN (IP-in-IP) conversations.

TUN in: outer IPv4 198.19.0.1 → RIP, protocol 4, outer TOS/TTL/DF copied from
the inner, outer ID = inner ID; the inner datagram is the original with TTL−1
(routed mode); MACs as DR.  Oversized DF packets (inner + 20 > 1500) get ICMP
"fragmentation needed", next-hop MTU 1480, from the VIP, out eth0.
"""

from __future__ import annotations

import dpkt

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, DIP1, FIN, PSH, RIP, RS_MAC, SYN, VIP, Step, ack_opts, counts,
    director_icmp_error, eth, fresh, ip_id, ipip_frame, ipv4, run, syn_opts, the_conn,
)
from pylvs.testing import icmp_error_frame, ip_payload, ip4, tcp_frame, udp_frame

CPORT = 40000


def c2v(flags, **kw):
    return tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, flags, **kw)


def tunneled(rs, flags, ttl=64, **kw):
    """Expected on eth1: [198.19.0.1 → RIP, proto 4] + original datagram with TTL−1."""
    inner = ip_payload(tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, flags, ttl=ttl - 1, **kw))
    return ipip_frame(RS_MAC[rs], D1_MAC, DIP1, RIP[rs], inner)


REQ = b"GET /tun HTTP/1.1\r\nHost: vip\r\n\r\n"


def test_tun_tcp_conversation():
    d = fresh("tun")
    rs = 13
    sy = dict(seq=100, opts=syn_opts(tsval=5), ident=0x3301, tos=0x10)
    a1 = dict(seq=101, ack=801, opts=ack_opts(6, 50), ident=0x3302)
    q = dict(seq=101, ack=801, opts=ack_opts(7, 50), ident=0x3303, payload=REQ, tos=0xB8)
    cf = dict(seq=101 + len(REQ), ack=900, opts=ack_opts(8, 51), ident=0x3304, df=False)
    ca = dict(seq=102 + len(REQ), ack=901, opts=ack_opts(9, 52), ident=0x3305, ttl=33)

    run(d, [Step("SYN", c2v(SYN, **sy), "eth0", 1.0, "forward", [("eth1", tunneled(rs, SYN, **sy))])])
    c = the_conn(d)
    assert c.state_name == "SYN_RECV"
    assert counts(d, 80)[rs] == (0, 1)
    run(d, [
        Step("ACK", c2v(ACK, **a1), "eth0", 1.1, "forward", [("eth1", tunneled(rs, ACK, **a1))]),
        Step("request", c2v(PSH | ACK, **q), "eth0", 1.2, "forward", [("eth1", tunneled(rs, PSH | ACK, **q))]),
    ])
    assert c.state_name == "ESTABLISHED"
    assert counts(d, 80) == {11: (0, 0), 12: (0, 0), 13: (1, 0)}
    run(d, [
        Step("FIN (DF clear)", c2v(FIN | ACK, **cf), "eth0", 1.3, "forward",
             [("eth1", tunneled(rs, FIN | ACK, **cf))]),
        Step("last ACK ttl=33", c2v(ACK, **{k: v for k, v in ca.items() if k != "ttl"}, ttl=33), "eth0", 1.4,
             "forward", [("eth1", tunneled(rs, ACK, **ca))]),
    ])
    assert c.state_name == "FIN_WAIT"
    assert counts(d, 80)[rs] == (0, 1)


def test_tun_outer_header_fields():
    """Spot-check the outer header independently of the builder above."""
    d = fresh("tun")
    f = c2v(SYN, seq=1, opts=syn_opts(), ident=0xBEEF, tos=0x2E, ttl=200)
    (a,) = d.handle(f, "eth0", 1.0)
    ip = dpkt.ethernet.Ethernet(a.frame).data
    assert (ip.p, ip.src, ip.dst) == (4, ip4(DIP1), ip4(RIP[13]))
    assert (ip.tos, ip.ttl, ip.df, ip.id, ip.len) == (0x2E, 199, 1, 0xBEEF, 20 + len(ip_payload(f)))
    assert bytes(ip.data)[8] == 199  # inner TTL


def test_tun_wrr_and_udp():
    d = fresh("tun")
    steps = []
    for i, rs in enumerate([13, 11, 12, 13]):
        kw = dict(seq=i, opts=syn_opts(), ident=0x900 + i)
        inner = ip_payload(tcp_frame(C_MAC, D0_MAC, CIP, VIP, 43000 + i, 80, SYN, ttl=63, **kw))
        steps.append(Step(f"SYN #{i}", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 43000 + i, 80, SYN, **kw), "eth0",
                          1.0 + i, "forward", [("eth1", ipip_frame(RS_MAC[rs], D1_MAC, DIP1, RIP[rs], inner))]))
    q = b"\x00\x01\x01\x00\x00\x01" + b"\x00" * 6 + b"\x03tun\x00\x00\x01\x00\x01"
    for i, rs in enumerate([11, 12]):
        inner = ip_payload(udp_frame(C_MAC, D0_MAC, CIP, VIP, 7000 + i, 53, q, ident=0x77 + i, ttl=63))
        steps.append(Step(f"UDP #{i}", udp_frame(C_MAC, D0_MAC, CIP, VIP, 7000 + i, 53, q, ident=0x77 + i),
                          "eth0", 10.0 + i, "forward",
                          [("eth1", ipip_frame(RS_MAC[rs], D1_MAC, DIP1, RIP[rs], inner))]))
    run(d, steps)
    assert counts(d, 80) == {11: (0, 1), 12: (0, 1), 13: (0, 2)}
    assert counts(d, 53) == {11: (0, 1), 12: (0, 1), 13: (0, 0)}


def _established(d):
    run(d, [
        Step("SYN", c2v(SYN, seq=1, opts=syn_opts(), ident=1), "eth0", 1.0, "forward",
             [("eth1", tunneled(13, SYN, seq=1, opts=syn_opts(), ident=1))]),
        Step("ACK", c2v(ACK, seq=2, ack=2, ident=2), "eth0", 1.1, "forward",
             [("eth1", tunneled(13, ACK, seq=2, ack=2, ident=2))]),
    ])


def test_tun_frag_needed():
    d = fresh("tun")
    _established(d)
    # 1480-byte datagram: + 20 outer = 1500, fits exactly.
    fits = dict(seq=2, ack=2, ident=3, payload=b"a" * 1440)
    big = dict(seq=2, ack=2, ident=4, payload=b"b" * 1441)
    big_f = c2v(PSH | ACK, **big)
    assert len(ip_payload(big_f)) == 1481
    run(d, [
        Step("1480 fits", c2v(PSH | ACK, **fits), "eth0", 1.2, "forward",
             [("eth1", tunneled(13, PSH | ACK, **fits))]),
        Step("1481 DF → frag needed", big_f, "eth0", 1.3, "reply",
             [("eth0", lambda got: director_icmp_error(C_MAC, D0_MAC, VIP, CIP, 3, 4, ip_payload(big_f),
                                                       rest=1480, ident=ip_id(got)))],
             drop="frag_needed"),
    ])
    assert d.drops["frag_needed"] == 1
    assert the_conn(d).pkts_in == 3  # the refused packet is not counted as forwarded


def test_tun_oversized_df_icmp_error_not_answered_nor_fragmented():
    d = fresh("tun")
    _established(d)
    # The client reports (DF set, oversized for the tunnel) an error about a reply
    # the RS sent it directly as VIP:80.  No ICMP error may come back for it.
    # 1508-byte ICMP datagram + 20 outer = 1528 > 1500 with DF set.
    reply = ip_payload(tcp_frame("02:00:00:00:02:13", C_MAC, VIP, CIP, 80, CPORT, PSH | ACK, seq=2, ack=2,
                                 payload=b"x" * 1440, ttl=60))
    ic = dpkt.icmp.ICMP(type=3, code=3, data=b"\x00\x00\x00\x00" + reply)
    big_err = eth(D0_MAC, C_MAC, ipv4(CIP, VIP, 1, bytes(ic), ttl=64, ident=0x4444, df=True))
    acts = d.handle(big_err, "eth0", 2.0)
    for a in acts:
        if hasattr(a, "frame"):
            assert a.interface != "eth0", f"an ICMP error was answered: {a}"
    assert d.events["icmp_errors_sent"] == 0
    # Nor may a DF datagram be fragmented (RFC 791/1191): it cannot go out as is.
    for a in acts:
        if hasattr(a, "frame"):
            ip = dpkt.ethernet.Ethernet(a.frame).data
            assert len(a.frame) <= 1514
            assert not (ip.df and (ip.mf or ip.offset)), f"DF datagram fragmented: {ip!r}"[:300]


def test_tun_icmp_error_with_ttl_1_is_dropped_silently():
    d = fresh("tun")
    _established(d)
    reply = ip_payload(tcp_frame("02:00:00:00:02:13", C_MAC, VIP, CIP, 80, CPORT, ACK, seq=2, ack=2, ttl=60))
    small = icmp_error_frame(C_MAC, D0_MAC, CIP, VIP, 3, 3, reply[:28], ttl=1, ident=0x4445)
    run(d, [Step("ICMP error ttl=1", small, "eth0", 2.1, "drop", [], drop="ttl_exceeded")])
    assert d.events["icmp_errors_sent"] == 0


def test_tun_icmp_from_client_relayed_into_tunnel():
    """Client's ICMP error about a reply (VIP:80 → C) goes to the RS, inside IPIP,
    unchanged apart from TTL−1 (TUN does no address translation)."""
    d = fresh("tun")
    _established(d)
    reply = ip_payload(tcp_frame("02:00:00:00:02:13", C_MAC, VIP, CIP, 80, CPORT, ACK, seq=2, ack=2, ttl=60))
    err = icmp_error_frame(C_MAC, D0_MAC, CIP, VIP, 3, 4, reply, rest=1400, ident=0x5151)
    inner = ip_payload(icmp_error_frame(C_MAC, D0_MAC, CIP, VIP, 3, 4, reply, rest=1400, ident=0x5151, ttl=63))
    run(d, [Step("client ICMP", err, "eth0", 2.0, "forward",
                 [("eth1", ipip_frame(RS_MAC[13], D1_MAC, DIP1, RIP[13], inner))])])
