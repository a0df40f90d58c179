"""Golden DR (direct routing) conversations.

DR in: the IP datagram leaves byte-identical (no TTL change, no checksum
change); only the Ethernet header changes: dst = RS MAC, src = eth1 MAC.
Real port = virtual port.  The director sees only the client's half, so the
IPVS INPUT-ONLY state table applies.
"""

from __future__ import annotations

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, FIN, PSH, RS_MAC, RST, SYN, VIP, Step, ack_opts, counts, fresh,
    run, syn_opts, the_conn,
)
from pylvs.testing import tcp_frame, udp_frame

CPORT = 40000


def c2v(flags, **kw):
    return tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, flags, **kw)


def d2r(rs, flags, **kw):
    """The same IP datagram (TTL, ID, checksums untouched) re-addressed to the RS MAC."""
    return tcp_frame(D1_MAC, RS_MAC[rs], CIP, VIP, CPORT, 80, flags, **kw)


REQ = b"GET /dr HTTP/1.1\r\nHost: vip\r\n\r\n"


def test_dr_tcp_conversation_input_only():
    d = fresh("dr")
    rs = 13
    sy = dict(seq=3000, opts=syn_opts(tsval=7), ident=0x0101, ttl=64)
    a1 = dict(seq=3001, ack=9001, opts=ack_opts(8, 70), ident=0x0102, ttl=64)
    q = dict(seq=3001, ack=9001, opts=ack_opts(9, 70), ident=0x0103, payload=REQ, ttl=57, tos=0x28)
    a2 = dict(seq=3001 + len(REQ), ack=9500, opts=ack_opts(10, 71), ident=0x0104, ttl=64)
    cf = dict(seq=3001 + len(REQ), ack=9500, opts=ack_opts(11, 71), ident=0x0105, ttl=64)
    ca = dict(seq=3002 + len(REQ), ack=9501, opts=ack_opts(12, 72), ident=0x0106, ttl=64)

    run(d, [Step("SYN", c2v(SYN, **sy), "eth0", 5.0, "forward", [("eth1", d2r(rs, SYN, **sy))])])
    c = the_conn(d)
    assert c.state_name == "SYN_RECV"
    assert counts(d, 80)[rs] == (0, 1)

    run(d, [Step("ACK", c2v(ACK, **a1), "eth0", 5.1, "forward", [("eth1", d2r(rs, ACK, **a1))])])
    assert c.state_name == "ESTABLISHED"
    assert counts(d, 80) == {11: (0, 0), 12: (0, 0), 13: (1, 0)}

    run(d, [
        Step("request", c2v(PSH | ACK, **q), "eth0", 5.2, "forward", [("eth1", d2r(rs, PSH | ACK, **q))]),
        Step("ACK of response", c2v(ACK, **a2), "eth0", 5.3, "forward", [("eth1", d2r(rs, ACK, **a2))]),
    ])
    assert c.state_name == "ESTABLISHED"

    # INPUT-ONLY: FIN in ESTABLISHED → FIN_WAIT; the ACK of the RS's FIN keeps FIN_WAIT.
    run(d, [Step("client FIN", c2v(FIN | ACK, **cf), "eth0", 5.4, "forward",
                 [("eth1", d2r(rs, FIN | ACK, **cf))])])
    assert c.state_name == "FIN_WAIT"
    assert counts(d, 80)[rs] == (0, 1)
    run(d, [Step("last ACK", c2v(ACK, **ca), "eth0", 5.5, "forward", [("eth1", d2r(rs, ACK, **ca))])])
    assert c.state_name == "FIN_WAIT"
    assert c.expires == 5.5 + 120
    d.tick(5.5 + 121)
    assert len(d.table) == 0
    assert counts(d, 80) == {11: (0, 0), 12: (0, 0), 13: (0, 0)}


def test_dr_rst_closes():
    d = fresh("dr")
    sy = dict(seq=1, opts=syn_opts(), ident=9)
    run(d, [
        Step("SYN", c2v(SYN, **sy), "eth0", 1.0, "forward", [("eth1", d2r(13, SYN, **sy))]),
        Step("ACK", c2v(ACK, seq=2, ack=2, ident=10), "eth0", 1.1, "forward",
             [("eth1", d2r(13, ACK, seq=2, ack=2, ident=10))]),
        Step("RST", c2v(RST | ACK, seq=2, ack=2, ident=11), "eth0", 1.2, "forward",
             [("eth1", d2r(13, RST | ACK, seq=2, ack=2, ident=11))]),
    ])
    c = the_conn(d)
    assert c.state_name == "CLOSE"
    assert c.expires == 1.2 + 10
    assert counts(d, 80)[13] == (0, 1)


def test_dr_wrr_order():
    d = fresh("dr")
    steps = []
    for i, rs in enumerate([13, 11, 12, 13]):
        f = dict(seq=10 * i, opts=syn_opts(), ident=0x700 + i)
        steps.append(Step(f"SYN #{i}", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 42000 + i, 80, SYN, **f), "eth0",
                          1.0 + i, "forward",
                          [("eth1", tcp_frame(D1_MAC, RS_MAC[rs], CIP, VIP, 42000 + i, 80, SYN, **f))]))
    run(d, steps)
    assert counts(d, 80) == {11: (0, 1), 12: (0, 1), 13: (0, 2)}


def test_dr_udp_inbound():
    d = fresh("dr")
    q = b"\xab\xcd\x01\x00\x00\x01" + b"\x00" * 6 + b"\x02dr\x04test\x00\x00\x01\x00\x01"
    run(d, [
        Step(f"query {p}", udp_frame(C_MAC, D0_MAC, CIP, VIP, p, 53, q, ident=p), "eth0", 1.0 + i, "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[rs], CIP, VIP, p, 53, q, ident=p))])
        for i, (p, rs) in enumerate([(6000, 11), (6001, 12), (6002, 13), (6003, 11), (6000, 11)])
    ])
    assert len(d.table) == 4
    assert counts(d, 53) == {11: (0, 2), 12: (0, 1), 13: (0, 1)}


def test_dr_forwards_ttl_1_unchanged():
    """DR is not an IP hop: a TTL-1 (even TTL-0) packet is re-addressed, not answered."""
    d = fresh("dr")
    sy = dict(seq=1, opts=syn_opts(), ident=42, ttl=1)
    run(d, [
        Step("SYN ttl=1", c2v(SYN, **sy), "eth0", 1.0, "forward", [("eth1", d2r(13, SYN, **sy))]),
        Step("ACK ttl=0", c2v(ACK, seq=2, ack=2, ident=43, ttl=0), "eth0", 1.1, "forward",
             [("eth1", d2r(13, ACK, seq=2, ack=2, ident=43, ttl=0))]),
    ])
    assert d.drops["ttl_exceeded"] == 0
