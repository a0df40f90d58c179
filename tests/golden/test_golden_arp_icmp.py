"""Golden ARP answers, TTL expiry and ICMP error relaying."""

from __future__ import annotations

import pytest

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, DIP0, DIP1, LIP, RIP, RS_MAC, SYN, VIP, Step, counts,
    director_icmp_error, fresh, ip_id, run, run_one, syn_opts,
)
from pylvs.testing import arp_frame, icmp_error_frame, ip_payload, tcp_frame, udp_frame

BCAST = "ff:ff:ff:ff:ff:ff"
ZERO = "00:00:00:00:00:00"


# ------------------------------------------------------------------ ARP

@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_arp_for_vip_on_eth0(mode):
    d = fresh(mode)
    run(d, [
        Step("who-has VIP", arp_frame(C_MAC, BCAST, 1, C_MAC, CIP, ZERO, VIP), "eth0", 1.0, "reply",
             [("eth0", arp_frame(D0_MAC, C_MAC, 2, D0_MAC, VIP, C_MAC, CIP))]),
        Step("who-has DIP", arp_frame(C_MAC, BCAST, 1, C_MAC, CIP, ZERO, DIP0), "eth0", 1.1, "reply",
             [("eth0", arp_frame(D0_MAC, C_MAC, 2, D0_MAC, DIP0, C_MAC, CIP))]),
        Step("who-has stranger", arp_frame(C_MAC, BCAST, 1, C_MAC, CIP, ZERO, "198.18.0.99"), "eth0", 1.2,
             "drop", [], drop="arp_not_for_us"),
    ])
    assert d.drops["arp_not_for_us"] == 1


def test_arp_for_lip_on_eth1():
    d = fresh("fullnat")
    run(d, [
        Step("RS asks for the LIP", arp_frame(RS_MAC[11], BCAST, 1, RS_MAC[11], RIP[11], ZERO, LIP), "eth1", 1.0,
             "reply", [("eth1", arp_frame(D1_MAC, RS_MAC[11], 2, D1_MAC, LIP, RS_MAC[11], RIP[11]))]),
        Step("RS asks for the DIP", arp_frame(RS_MAC[12], BCAST, 1, RS_MAC[12], RIP[12], ZERO, DIP1), "eth1",
             1.1, "reply", [("eth1", arp_frame(D1_MAC, RS_MAC[12], 2, D1_MAC, DIP1, RS_MAC[12], RIP[12]))]),
        Step("RS asks for another RS", arp_frame(RS_MAC[12], BCAST, 1, RS_MAC[12], RIP[12], ZERO, RIP[13]),
             "eth1", 1.2, "drop", [], drop="arp_not_for_us"),
    ])


# ------------------------------------------------------------------ TTL

@pytest.mark.parametrize("mode", ["nat", "tun", "fullnat"])
def test_ttl_1_syn_gets_time_exceeded(mode):
    d = fresh(mode)
    syn = tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN, seq=1, opts=syn_opts(), ttl=1, ident=0x1234)
    run(d, [Step("SYN ttl=1", syn, "eth0", 1.0, "reply",
                 [("eth0", lambda got: director_icmp_error(C_MAC, D0_MAC, DIP0, CIP, 11, 0, ip_payload(syn),
                                                           ident=ip_id(got)))],
                 drop="ttl_exceeded")])
    assert len(d.table) == 0
    assert d.drops["ttl_exceeded"] == 1
    assert counts(d, 80 if mode == "tun" else 8080) == {11: (0, 0), 12: (0, 0), 13: (0, 0)}


def test_ttl_1_udp_and_established_nat():
    d = fresh("nat")
    u = udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, b"q", ttl=1, ident=9)
    syn = tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN, seq=1, ident=10)
    data = tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, ACK, seq=2, ack=2, payload=b"x", ttl=1, ident=11)
    back = tcp_frame(RS_MAC[13], D1_MAC, RIP[13], CIP, 8080, 40000, SYN | ACK, seq=5, ack=2, ttl=1, ident=12)
    run(d, [
        Step("UDP ttl=1", u, "eth0", 1.0, "reply",
             [("eth0", lambda got: director_icmp_error(C_MAC, D0_MAC, DIP0, CIP, 11, 0, ip_payload(u),
                                                       ident=ip_id(got)))], drop="ttl_exceeded"),
        Step("SYN", syn, "eth0", 1.1, "forward",
             [("eth1", tcp_frame(D1_MAC, RS_MAC[13], CIP, RIP[13], 40000, 8080, SYN, seq=1, ident=10, ttl=63))]),
        Step("data ttl=1", data, "eth0", 1.2, "reply",
             [("eth0", lambda got: director_icmp_error(C_MAC, D0_MAC, DIP0, CIP, 11, 0, ip_payload(data),
                                                       ident=ip_id(got)))], drop="ttl_exceeded"),
        # A reply with TTL 1 from the RS: the ingress interface is eth1, so 198.19.0.1 answers.
        Step("reply ttl=1", back, "eth1", 1.3, "reply",
             [("eth1", lambda got: director_icmp_error(RS_MAC[13], D1_MAC, DIP1, RIP[13], 11, 0,
                                                       ip_payload(back), ident=ip_id(got)))], drop="ttl_exceeded"),
    ])
    assert len(d.table) == 1


# ------------------------------------------------------------------ ICMP relay

SYN_KW = dict(seq=1000, opts=syn_opts(), ident=0x1001)
SA_KW = dict(seq=7000, ack=1001, ident=0x2001)


def _nat_flow(d):
    run(d, [Step("SYN", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN, **SYN_KW), "eth0", 1.0, "forward",
                 [("eth1", tcp_frame(D1_MAC, RS_MAC[13], CIP, RIP[13], 40000, 8080, SYN, ttl=63, **SYN_KW))])])


def _fullnat_flow(d):
    run(d, [Step("SYN", tcp_frame(C_MAC, D0_MAC, CIP, VIP, 40000, 80, SYN, **SYN_KW), "eth0", 1.0, "forward",
                 [("eth1", tcp_frame(D1_MAC, RS_MAC[13], LIP, RIP[13], 1024, 8080, SYN, ttl=63, **SYN_KW))])])


def _q(src, dst, sport, dport, flags, kw, cut=None):
    """The datagram as its receiver saw it (TTL already decremented once by us)."""
    ip = ip_payload(tcp_frame(C_MAC, D0_MAC, src, dst, sport, dport, flags, ttl=63, **kw))
    return ip if cut is None else ip[:cut]


@pytest.mark.parametrize("icmp_type, code, rest, cut", [
    pytest.param(3, 3, 0, None, id="port-unreachable-full-quote"),
    pytest.param(3, 4, 1400, 28, id="frag-needed-8-byte-quote"),
    pytest.param(11, 0, 0, None, id="time-exceeded"),
])
def test_nat_icmp_from_rs_relayed_to_client(icmp_type, code, rest, cut):
    d = fresh("nat")
    _nat_flow(d)
    err = icmp_error_frame(RS_MAC[13], D1_MAC, RIP[13], CIP, icmp_type, code,
                           _q(CIP, RIP[13], 40000, 8080, SYN, SYN_KW, cut), rest=rest, ident=0x9001, ttl=64)
    want = icmp_error_frame(D0_MAC, C_MAC, VIP, CIP, icmp_type, code,
                            _q(CIP, VIP, 40000, 80, SYN, SYN_KW, cut), rest=rest, ident=0x9001, ttl=63)
    run(d, [Step("RS ICMP", err, "eth1", 1.5, "forward", [("eth0", want)])])


@pytest.mark.parametrize("cut", [None, 28])
def test_fullnat_icmp_from_rs_relayed_to_client(cut):
    d = fresh("fullnat")
    _fullnat_flow(d)
    err = icmp_error_frame(RS_MAC[13], D1_MAC, RIP[13], LIP, 3, 3,
                           _q(LIP, RIP[13], 1024, 8080, SYN, SYN_KW, cut), ident=0x9002, ttl=64)
    want = icmp_error_frame(D0_MAC, C_MAC, VIP, CIP, 3, 3,
                            _q(CIP, VIP, 40000, 80, SYN, SYN_KW, cut), ident=0x9002, ttl=63)
    run(d, [Step("RS ICMP", err, "eth1", 1.5, "forward", [("eth0", want)])])


def test_nat_icmp_from_client_relayed_to_rs():
    d = fresh("nat")
    _nat_flow(d)
    err = icmp_error_frame(C_MAC, D0_MAC, CIP, VIP, 3, 4, _q(VIP, CIP, 80, 40000, SYN | ACK, SA_KW),
                           rest=1400, ident=0x3001)
    want = icmp_error_frame(D1_MAC, RS_MAC[13], CIP, RIP[13], 3, 4, _q(RIP[13], CIP, 8080, 40000, SYN | ACK, SA_KW),
                            rest=1400, ident=0x3001, ttl=63)
    run(d, [Step("client ICMP", err, "eth0", 1.5, "forward", [("eth1", want)])])


def test_fullnat_icmp_from_client_relayed_to_rs():
    d = fresh("fullnat")
    _fullnat_flow(d)
    err = icmp_error_frame(C_MAC, D0_MAC, CIP, VIP, 3, 3, _q(VIP, CIP, 80, 40000, SYN | ACK, SA_KW), ident=0x3002)
    want = icmp_error_frame(D1_MAC, RS_MAC[13], LIP, RIP[13], 3, 3,
                            _q(RIP[13], LIP, 8080, 1024, SYN | ACK, SA_KW), ident=0x3002, ttl=63)
    run(d, [Step("client ICMP", err, "eth0", 1.5, "forward", [("eth1", want)])])


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
def test_icmp_without_connection_dropped(mode):
    d = fresh(mode)
    (_nat_flow if mode == "nat" else _fullnat_flow)(d)
    dst = CIP if mode == "nat" else LIP
    src_ip = CIP if mode == "nat" else LIP
    sport = 40000 if mode == "nat" else 1024
    run(d, [
        Step("RS ICMP, unknown port", icmp_error_frame(
            RS_MAC[13], D1_MAC, RIP[13], dst, 3, 3, _q(src_ip, RIP[13], sport + 1, 8080, SYN, SYN_KW)),
            "eth1", 1.5, "drop", [], drop="icmp_no_conn"),
        Step("client ICMP, unknown flow", icmp_error_frame(
            C_MAC, D0_MAC, CIP, VIP, 3, 3, _q(VIP, CIP, 80, 1, SYN | ACK, SA_KW)),
            "eth0", 1.6, "drop", [], drop="icmp_no_conn"),
        Step("client ICMP about UDP nobody sent", icmp_error_frame(
            C_MAC, D0_MAC, CIP, VIP, 3, 3, ip_payload(udp_frame(C_MAC, D0_MAC, VIP, CIP, 53, 5000, b"x"))[:28]),
            "eth0", 1.7, "drop", [], drop="icmp_no_conn"),
    ])
    assert d.drops["icmp_no_conn"] == 3


def test_icmp_error_with_ttl_1_is_not_answered():
    d = fresh("nat")
    _nat_flow(d)
    err = icmp_error_frame(RS_MAC[13], D1_MAC, RIP[13], CIP, 3, 3, _q(CIP, RIP[13], 40000, 8080, SYN, SYN_KW),
                           ttl=1)
    run_one(d, Step("RS ICMP ttl=1", err, "eth1", 1.5, "drop", [], drop="ttl_exceeded"))
    assert d.events["icmp_errors_sent"] == 0
