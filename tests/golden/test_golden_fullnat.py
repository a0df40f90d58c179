"""Golden FULLNAT conversations, TOA and MSS.

FULLNAT in: src → 198.19.0.250:lport (lports from 1024, sequential), dst →
RIP:rport, TTL−1.  TOA (254, 8, cport, caddr) goes first in the options of the
ACK that completes the handshake only; IP length +8, data offset +2 words,
other options kept in order after it, NOP-padded.  A client's own TOA-kind
option is removed (NOPs when we are not inserting).
FULLNAT out: src → VIP:vport, dst → client:cport, TTL−1; the SYN-ACK's MSS is
lowered by 8.
"""

from __future__ import annotations

import pytest

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, FIN, LIP, MSS1452, PSH, RIP, RS_MAC, SYN, VIP, Step, ack_opts,
    counts, fresh, run, syn_opts, the_conn, toa,
)
from pylvs.testing import tcp_frame, udp_frame

CPORT = 40000


def c2v(flags, cport=CPORT, **kw):
    return tcp_frame(C_MAC, D0_MAC, CIP, VIP, cport, 80, flags, **kw)


def l2r(rs, flags, lport=1024, ttl=63, **kw):
    """Expected on eth1: LIP:lport → RIP:8080, TTL−1."""
    return tcp_frame(D1_MAC, RS_MAC[rs], LIP, RIP[rs], lport, 8080, flags, ttl=ttl, **kw)


def r2l(rs, flags, lport=1024, **kw):
    """The RS answers the LIP (it needs only a route to it) on eth1."""
    return tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], LIP, 8080, lport, flags, **kw)


def v2c(flags, cport=CPORT, ttl=63, **kw):
    return tcp_frame(D0_MAC, C_MAC, VIP, CIP, 80, cport, flags, ttl=ttl, **kw)


REQ = b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
RESP = b"HTTP/1.1 204 No Content\r\n\r\n"
FORGED = b"\xfe\x08\x00\x01" + bytes([6, 6, 6, 6])  # a client claiming 6.6.6.6:1


def test_fullnat_tcp_conversation():
    d = fresh("fullnat")
    rs = 13
    sy = dict(seq=1000, opts=syn_opts(tsval=50), ident=0x6001)
    sa_in = dict(seq=7000, ack=1001, opts=syn_opts(tsval=900, tsecr=50), ident=0x7001, win=65160)
    sa_out = dict(sa_in, opts=syn_opts(mss=MSS1452, tsval=900, tsecr=50))
    a1 = dict(seq=1001, ack=7001, ident=0x6002)
    q = dict(seq=1001, ack=7001, opts=ack_opts(52, 900), ident=0x6003, payload=REQ)
    r = dict(seq=7001, ack=1001 + len(REQ), opts=ack_opts(901, 52), ident=0x7002, payload=RESP)
    cf = dict(seq=1001 + len(REQ), ack=7001 + len(RESP), opts=ack_opts(53, 901), ident=0x6004)
    rf = dict(seq=7001 + len(RESP), ack=1002 + len(REQ), opts=ack_opts(902, 53), ident=0x7003)
    ca = dict(seq=1002 + len(REQ), ack=7002 + len(RESP), opts=ack_opts(54, 902), ident=0x6005)

    run(d, [
        Step("SYN (no TOA by default)", c2v(SYN, **sy), "eth0", 1.0, "forward", [("eth1", l2r(rs, SYN, **sy))]),
        Step("SYN-ACK, MSS 1460 → 1452", r2l(rs, SYN | ACK, **sa_in), "eth1", 1.001, "forward",
             [("eth0", v2c(SYN | ACK, **sa_out))]),
    ])
    c = the_conn(d)
    assert (c.laddr, c.lport) == (bytes([198, 19, 0, 250]), 1024)
    assert c.state_name == "SYN_RECV"
    assert counts(d, 8080)[rs] == (0, 1)

    run(d, [Step("handshake ACK gets TOA", c2v(ACK, **a1, opts=ack_opts(51, 900)), "eth0", 1.002, "forward",
                 [("eth1", l2r(rs, ACK, **a1, opts=toa(CPORT, CIP) + ack_opts(51, 900)))])])
    assert c.state_name == "ESTABLISHED"
    assert counts(d, 8080) == {11: (0, 0), 12: (0, 0), 13: (1, 0)}

    run(d, [
        Step("data: no TOA", c2v(PSH | ACK, **q), "eth0", 1.003, "forward", [("eth1", l2r(rs, PSH | ACK, **q))]),
        Step("response", r2l(rs, PSH | ACK, **r), "eth1", 1.004, "forward", [("eth0", v2c(PSH | ACK, **r))]),
        Step("client FIN", c2v(FIN | ACK, **cf), "eth0", 1.005, "forward", [("eth1", l2r(rs, FIN | ACK, **cf))]),
    ])
    assert c.state_name == "CLOSE_WAIT"
    assert counts(d, 8080)[rs] == (0, 1)
    run(d, [
        Step("RS FIN", r2l(rs, FIN | ACK, **rf), "eth1", 1.006, "forward", [("eth0", v2c(FIN | ACK, **rf))]),
        Step("last ACK: no TOA", c2v(ACK, **ca), "eth0", 1.007, "forward", [("eth1", l2r(rs, ACK, **ca))]),
    ])
    assert c.state_name == "TIME_WAIT"
    d.tick(1.007 + 121)
    assert len(d.table) == 0
    assert counts(d, 8080) == {11: (0, 0), 12: (0, 0), 13: (0, 0)}


def test_fullnat_sequential_lports_wrr_and_odd_mss_offset():
    d = fresh("fullnat")
    steps = []
    for i, rs in enumerate([13, 11, 12, 13]):
        kw = dict(seq=10 + i, opts=syn_opts(), ident=0x800 + i)
        steps.append(Step(f"SYN #{i}", c2v(SYN, cport=44000 + i, **kw), "eth0", 1.0 + i, "forward",
                          [("eth1", l2r(rs, SYN, lport=1024 + i, **kw))]))
    # SYN-ACK whose MSS sits at an odd offset (after one NOP).
    odd_in = b"\x01" + b"\x02\x04\x05\xb4" + b"\x03\x03\x07"
    odd_out = b"\x01" + MSS1452 + b"\x03\x03\x07"
    steps.append(Step("SYN-ACK odd MSS", r2l(11, SYN | ACK, lport=1025, seq=1, ack=12, opts=odd_in, ident=5),
                      "eth1", 9.0, "forward",
                      [("eth0", v2c(SYN | ACK, cport=44001, seq=1, ack=12, opts=odd_out, ident=5))]))
    run(d, steps)
    assert counts(d, 8080) == {11: (0, 1), 12: (0, 1), 13: (0, 2)}


def _handshake(d, ack_frame_opts, expected_opts, payload=b"", seq=1001):
    sy = dict(seq=1000, opts=syn_opts(), ident=1)
    sa = dict(seq=7000, ack=1001, opts=b"\x02\x04\x05\xb4", ident=2)
    a1 = dict(seq=seq, ack=7001, ident=3, payload=payload)
    run(d, [
        Step("SYN", c2v(SYN, **sy), "eth0", 1.0, "forward", [("eth1", l2r(13, SYN, **sy))]),
        Step("SYN-ACK", r2l(13, SYN | ACK, **sa), "eth1", 1.1, "forward",
             [("eth0", v2c(SYN | ACK, **dict(sa, opts=MSS1452)))]),
        Step("ACK", c2v(ACK, opts=ack_frame_opts, **a1), "eth0", 1.2, "forward",
             [("eth1", l2r(13, ACK, opts=expected_opts, **a1))]),
    ])


T = toa(CPORT, CIP)


@pytest.mark.parametrize("client_opts, expected_opts", [
    pytest.param(b"", T, id="no-options"),
    pytest.param(ack_opts(1, 2), T + ack_opts(1, 2), id="nop-nop-ts"),
    pytest.param(b"\x03\x03\x07\x00", T + b"\x03\x03\x07\x01", id="eol-padding-becomes-nop"),
    pytest.param(b"\x01\x01\x05\x0a" + bytes(range(8)), T + b"\x01\x01\x05\x0a" + bytes(range(8)), id="sack"),
    # Spec: the client's TOA is removed; NOPs only "when not inserting".
    pytest.param(FORGED + ack_opts(1, 2), T + ack_opts(1, 2), id="forged-toa-removed"),
])
def test_fullnat_toa_layout(client_opts, expected_opts):
    d = fresh("fullnat")
    _handshake(d, client_opts, expected_opts)
    assert d.events["toa_inserted"] == 1


def test_fullnat_toa_skipped_without_option_room():
    d = fresh("fullnat")
    full = ack_opts(1, 2) + b"\x01\x01\x05\x1a" + bytes(range(24))  # 12 + 28 = 40 bytes
    assert len(full) == 40
    _handshake(d, full, full)
    assert d.events["toa_no_room"] == 1
    assert the_conn(d).state_name == "ESTABLISHED"


def test_fullnat_toa_skipped_when_mtu_exceeded():
    d = fresh("fullnat")
    _handshake(d, ack_opts(1, 2), ack_opts(1, 2), payload=b"p" * 1448)  # 1500 bytes; +8 would not fit
    assert d.events["toa_mtu"] == 1


def test_fullnat_forged_toa_neutralised_when_not_inserting():
    d = fresh("fullnat")
    nops = b"\x01" * 8
    sy_in = dict(seq=1000, opts=FORGED + syn_opts(), ident=1)
    sy_out = dict(sy_in, opts=nops + syn_opts())
    run(d, [Step("SYN with forged TOA", c2v(SYN, **sy_in), "eth0", 1.0, "forward",
                 [("eth1", l2r(13, SYN, **sy_out))])])
    run(d, [
        Step("SYN-ACK", r2l(13, SYN | ACK, seq=7000, ack=1001, ident=2), "eth1", 1.1, "forward",
             [("eth0", v2c(SYN | ACK, seq=7000, ack=1001, ident=2))]),
        Step("ACK", c2v(ACK, seq=1001, ack=7001, ident=3), "eth0", 1.2, "forward",
             [("eth1", l2r(13, ACK, seq=1001, ack=7001, ident=3, opts=T))]),
        Step("data with forged TOA", c2v(PSH | ACK, seq=1001, ack=7001, ident=4, opts=FORGED + ack_opts(5, 6),
                                         payload=b"hi"), "eth0", 1.3, "forward",
             [("eth1", l2r(13, PSH | ACK, seq=1001, ack=7001, ident=4, opts=nops + ack_opts(5, 6),
                           payload=b"hi"))]),
    ])


def test_fullnat_udp_round_trip():
    d = fresh("fullnat")
    q = b"\x99\x01\x01\x00\x00\x01" + b"\x00" * 6 + b"\x02fn\x00\x00\x01\x00\x01"
    a = q[:2] + b"\x81\x80" + q[4:]
    run(d, [
        Step("query", udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, q, ident=11), "eth0", 1.0, "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[11], LIP, RIP[11], 1024, 5353, q, ident=11, ttl=63))]),
        Step("answer", udp_frame(RS_MAC[11], D1_MAC, RIP[11], LIP, 5353, 1024, a, ident=12), "eth1", 1.1,
             "forward", [("eth0", udp_frame(D0_MAC, C_MAC, VIP, CIP, 53, 5000, a, ident=12, ttl=63))]),
        Step("query 2", udp_frame(C_MAC, D0_MAC, CIP, VIP, 5001, 53, q, ident=13), "eth0", 1.2, "forward",
             [("eth1", udp_frame(D1_MAC, RS_MAC[12], LIP, RIP[12], 1025, 5353, q, ident=13, ttl=63))]),
        Step("answer 2", udp_frame(RS_MAC[12], D1_MAC, RIP[12], LIP, 5353, 1025, a, ident=14), "eth1", 1.3,
             "forward", [("eth0", udp_frame(D0_MAC, C_MAC, VIP, CIP, 53, 5001, a, ident=14, ttl=63))]),
    ])
    assert counts(d, 5353) == {11: (0, 1), 12: (0, 1), 13: (0, 0)}
