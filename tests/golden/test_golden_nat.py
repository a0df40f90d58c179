"""Golden NAT (masquerade) conversations: exact frames in, exact frames out.

NAT in: dst → RIP:rport, TTL−1, MACs eth1 → RS, everything else unchanged.
NAT out: src → VIP:vport, TTL−1, out eth0 to the MAC the flow came from.
"""

from __future__ import annotations

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, FIN, PSH, RIP, RS_MAC, SYN, VIP, Step, ack_opts, counts,
    fresh, run, the_conn, syn_opts,
)
from pylvs.testing import tcp_frame, udp_frame

CPORT = 40000


def c2v(flags, **kw):
    """Client → VIP:80 as it arrives on eth0."""
    return tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, flags, **kw)


def d2r(rs, flags, ttl=63, **kw):
    """Expected on eth1: client → RIP:8080, TTL−1."""
    return tcp_frame(D1_MAC, RS_MAC[rs], CIP, RIP[rs], CPORT, 8080, flags, ttl=ttl, **kw)


def r2c(rs, flags, **kw):
    """RS → client as it arrives on eth1 (the RS's gateway is the director)."""
    return tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], CIP, 8080, CPORT, flags, **kw)


def d2c(flags, ttl=63, **kw):
    """Expected on eth0: VIP:80 → client, TTL−1."""
    return tcp_frame(D0_MAC, C_MAC, VIP, CIP, 80, CPORT, flags, ttl=ttl, **kw)


REQ = b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n"
RESP = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def test_nat_tcp_conversation():
    d = fresh("nat")
    rs = 13  # first wrr pick for weights 1,1,2
    sy = dict(seq=1000, opts=syn_opts(tsval=111), ident=0x1001)
    sa = dict(seq=5000, ack=1001, opts=syn_opts(tsval=999, tsecr=111), ident=0x2001, win=65160)
    a1 = dict(seq=1001, ack=5001, opts=ack_opts(112, 999), ident=0x1002)
    q = dict(seq=1001, ack=5001, opts=ack_opts(113, 999), ident=0x1003, payload=REQ)
    r = dict(seq=5001, ack=1001 + len(REQ), opts=ack_opts(1000, 113), ident=0x2002, payload=RESP, win=509)
    cf = dict(seq=1001 + len(REQ), ack=5001 + len(RESP), opts=ack_opts(114, 1000), ident=0x1004)
    ra = dict(seq=5001 + len(RESP), ack=1002 + len(REQ), opts=ack_opts(1001, 114), ident=0x2003, win=509)
    rf = dict(seq=5001 + len(RESP), ack=1002 + len(REQ), opts=ack_opts(1002, 114), ident=0x2004, win=509)
    ca = dict(seq=1002 + len(REQ), ack=5002 + len(RESP), opts=ack_opts(115, 1002), ident=0x1005)

    run(d, [Step("SYN", c2v(SYN, **sy), "eth0", 10.0, "forward", [("eth1", d2r(rs, SYN, **sy))])])
    c = the_conn(d)
    assert c.state_name == "SYN_RECV"
    assert counts(d, 8080)[rs] == (0, 1)

    run(d, [Step("SYN-ACK", r2c(rs, SYN | ACK, **sa), "eth1", 10.001, "forward",
                 [("eth0", d2c(SYN | ACK, **sa))])])
    assert c.state_name == "SYN_RECV"
    assert counts(d, 8080)[rs] == (0, 1)

    run(d, [Step("ACK", c2v(ACK, **a1), "eth0", 10.002, "forward", [("eth1", d2r(rs, ACK, **a1))])])
    assert c.state_name == "ESTABLISHED"
    assert counts(d, 8080) == {11: (0, 0), 12: (0, 0), 13: (1, 0)}
    assert c.expires == 10.002 + 900

    run(d, [
        Step("request", c2v(PSH | ACK, **q), "eth0", 10.003, "forward", [("eth1", d2r(rs, PSH | ACK, **q))]),
        Step("response", r2c(rs, PSH | ACK, **r), "eth1", 10.004, "forward", [("eth0", d2c(PSH | ACK, **r))]),
    ])
    assert c.state_name == "ESTABLISHED"
    assert (c.pkts_in, c.pkts_out) == (3, 2)

    # Client closes first.  IPVS INPUT table: FIN in ESTABLISHED → CLOSE_WAIT.
    run(d, [Step("client FIN", c2v(FIN | ACK, **cf), "eth0", 10.005, "forward",
                 [("eth1", d2r(rs, FIN | ACK, **cf))])])
    assert c.state_name == "CLOSE_WAIT"
    assert counts(d, 8080)[rs] == (0, 1)
    run(d, [
        Step("RS ACKs FIN", r2c(rs, ACK, **ra), "eth1", 10.006, "forward", [("eth0", d2c(ACK, **ra))]),
        Step("RS FIN", r2c(rs, FIN | ACK, **rf), "eth1", 10.007, "forward", [("eth0", d2c(FIN | ACK, **rf))]),
    ])
    assert c.state_name == "TIME_WAIT"
    run(d, [Step("last ACK", c2v(ACK, **ca), "eth0", 10.008, "forward", [("eth1", d2r(rs, ACK, **ca))])])
    assert c.state_name == "TIME_WAIT"
    assert c.expires == 10.008 + 120
    assert counts(d, 8080)[rs] == (0, 1)

    d.tick(10.008 + 119)
    assert len(d.table) == 1
    d.tick(10.008 + 121)
    assert len(d.table) == 0
    assert counts(d, 8080) == {11: (0, 0), 12: (0, 0), 13: (0, 0)}


def test_nat_reply_goes_to_the_mac_the_flow_came_from():
    """A client behind a router (no neighbour entry): replies go back to the
    router's MAC on eth0, the MAC the flow arrived from."""
    d = fresh("nat")
    router, cip = "02:00:00:00:00:fe", "203.0.113.7"
    syn = tcp_frame(router, D0_MAC, cip, VIP, 5555, 80, SYN, seq=7, opts=syn_opts(), ident=77, ttl=60)
    run(d, [Step("SYN", syn, "eth0", 1.0, "forward",
                 [("eth1", tcp_frame(D1_MAC, RS_MAC[13], cip, RIP[13], 5555, 8080, SYN, seq=7, opts=syn_opts(),
                                     ident=77, ttl=59))])])
    sa = tcp_frame(RS_MAC[13], D1_MAC, RIP[13], cip, 8080, 5555, SYN | ACK, seq=90, ack=8, opts=syn_opts(),
                   ident=300, ttl=64)
    run(d, [Step("SYN-ACK", sa, "eth1", 1.1, "forward",
                 [("eth0", tcp_frame(D0_MAC, router, VIP, cip, 80, 5555, SYN | ACK, seq=90, ack=8,
                                     opts=syn_opts(), ident=300, ttl=63))])])


def test_nat_wrr_order_and_port_mapping():
    """IPVS wrr for weights 1,1,2 (cw starts at max weight): .13, .11, .12, .13."""
    d = fresh("nat")
    steps = []
    for i, rs in enumerate([13, 11, 12, 13]):
        port = 41000 + i
        steps.append(Step(
            f"SYN {port}", tcp_frame(C_MAC, D0_MAC, CIP, VIP, port, 80, SYN, seq=100 + i, opts=syn_opts(),
                                     ident=500 + i, tos=0x10),
            "eth0", 1.0 + i, "forward",
            [("eth1", tcp_frame(D1_MAC, RS_MAC[rs], CIP, RIP[rs], port, 8080, SYN, seq=100 + i,
                                opts=syn_opts(), ident=500 + i, tos=0x10, ttl=63))]))
    run(d, steps)
    assert len(d.table) == 4
    assert counts(d, 8080) == {11: (0, 1), 12: (0, 1), 13: (0, 2)}


def test_nat_udp_round_trip():
    d = fresh("nat")
    q1 = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    a1 = q1[:2] + b"\x81\x80" + q1[4:] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc6\x33\x64\x01"
    run(d, [
        # rr: the first flow goes to .11, the next to .12.
        Step("query", udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, q1, ident=0x4001), "eth0", 1.0, "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[11], CIP, RIP[11], 5000, 5353, q1, ident=0x4001, ttl=63))]),
        Step("answer", udp_frame(RS_MAC[11], D1_MAC, RIP[11], CIP, 5353, 5000, a1, ident=0x5001), "eth1", 1.01,
             "forward", [("eth0", udp_frame(D0_MAC, C_MAC, VIP, CIP, 53, 5000, a1, ident=0x5001, ttl=63))]),
        Step("query 2", udp_frame(C_MAC, D0_MAC, CIP, VIP, 5001, 53, q1, ident=0x4002, df=True), "eth0", 1.02,
             "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[12], CIP, RIP[12], 5001, 5353, q1, ident=0x4002, ttl=63,
                                 df=True))]),
        Step("same flow again", udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, q1, ident=0x4003), "eth0", 1.03,
             "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[11], CIP, RIP[11], 5000, 5353, q1, ident=0x4003, ttl=63))]),
    ])
    assert len(d.table) == 2
    # UDP has no ESTABLISHED: counted inactive.
    assert counts(d, 5353) == {11: (0, 1), 12: (0, 1), 13: (0, 0)}
    d.tick(1.03 + 301)
    assert len(d.table) == 0
    assert counts(d, 5353) == {11: (0, 0), 12: (0, 0), 13: (0, 0)}


def test_nat_reply_without_connection_is_not_translated():
    """An RS packet with no flow is not the director's to rewrite."""
    d = fresh("nat")
    stray = tcp_frame(RS_MAC[11], D1_MAC, RIP[11], CIP, 8080, 40000, SYN | ACK, seq=1, ack=2)
    run(d, [Step("stray reply", stray, "eth1", 1.0, "drop", [], drop="not_for_service")])
    assert len(d.table) == 0
