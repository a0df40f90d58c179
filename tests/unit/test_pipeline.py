"""Director behaviours beyond single-packet rewrites: persistence, table limits,
expiry, connection reuse, ARP resolution queue, fragmentation, removed servers."""

from __future__ import annotations

import dpkt
import pytest

from pylvs.config import parse_config
from pylvs.core.pipeline import Director, Drop, Hold, Send
from pylvs.testing import arp_frame, tcp_frame, udp_frame

C, D0, D1 = "02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02"
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04


def cfg(**vs_extra):
    vs = {"address": "198.18.0.100", "port": 80, "protocol": "tcp", "scheduler": "rr", "mode": "nat",
          "real_server": [{"address": f"198.19.0.{i}", "port": 8080} for i in (11, 12, 13)]}
    vs.update(vs_extra)
    table = vs.pop("table", {})
    neighbors = vs.pop("neighbors", [{"address": f"198.19.0.{i}", "mac": f"02:00:00:00:02:{i}",
                                      "interface": "eth1"} for i in (11, 12, 13)])
    interfaces = vs.pop("interfaces", None) or [
        {"name": "eth0", "mac": D0, "addresses": ["198.18.0.1/24"]},
        {"name": "eth1", "mac": D1, "addresses": ["198.19.0.1/24"]}]
    return parse_config({"interface": interfaces, "neighbor": neighbors, "virtual_server": [vs],
                         "table": table})


def syn(cip="198.18.0.10", cport=40000, **kw):
    return tcp_frame(C, D0, cip, "198.18.0.100", cport, 80, SYN, **kw)


def dst_of(actions):
    (s,) = [a for a in actions if isinstance(a, Send)]
    return dpkt.utils.inet_to_str(dpkt.ethernet.Ethernet(s.frame).data.dst)


def test_persistence_pins_client_network_to_one_server():
    d = Director(cfg(persistence_timeout=300, persistence_netmask=24))
    first = dst_of(d.handle(syn("198.18.0.10", 40000), "eth0", 1.0))
    # other ports and another host of the same /24 stick to it while rr would move on
    for i, cip in enumerate(["198.18.0.10", "198.18.0.20", "198.18.0.30"]):
        assert dst_of(d.handle(syn(cip, 41000 + i), "eth0", 2.0 + i)) == first
    # a client from another /24 is scheduled normally (rr moves to the next server)
    other = dst_of(d.handle(tcp_frame(C, D0, "198.18.1.10", "198.18.0.100", 40000, 80, SYN), "eth0", 10.0))
    assert other != first
    svc = d.services[0]
    assert sum(x.persist for x in svc.dests) == 2


def test_persistence_template_expires_after_timeout_without_flows():
    d = Director(cfg(persistence_timeout=60))
    first = dst_of(d.handle(syn(cport=40000), "eth0", 1.0))
    # the SYN_RECV flow lives 60 s; after both flow and template are gone rr resumes
    d.tick(200.0)
    assert len(d.table) == 0
    assert d.services[0].templates == {}
    assert dst_of(d.handle(syn(cport=40001), "eth0", 201.0)) != first


def test_table_full_refuses_new_flows_and_counts_but_old_ones_work():
    d = Director(cfg(table={"max_connections": 2}))
    d.handle(syn(cport=1), "eth0", 1.0)
    d.handle(syn(cport=2), "eth0", 1.0)
    assert d.handle(syn(cport=3), "eth0", 1.0) == [Drop("conn_table_full")]
    assert d.drops["conn_table_full"] == 1
    # an existing flow's next packet still goes through
    out = d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, ACK, seq=1001, ack=1), "eth0", 1.5)
    assert [type(a) for a in out] == [Send]


def test_flow_expires_by_state_timeout():
    d = Director(cfg())
    d.handle(syn(), "eth0", 0.0)
    (conn,) = list(d.table)
    assert conn.state_name == "SYN_RECV" and conn.expires == 60.0
    d.tick(59.9)
    assert len(d.table) == 1
    d.tick(60.0)
    assert len(d.table) == 0
    assert d.services[0].dests[0].inactive == 0 and d.services[0].dests[0].active == 0


def test_udp_flow_uses_udp_timeout_and_is_inactive():
    d = Director(parse_config({
        "interface": [{"name": "eth0", "mac": D0, "addresses": ["198.18.0.1/24"]},
                      {"name": "eth1", "mac": D1, "addresses": ["198.19.0.1/24"]}],
        "neighbor": [{"address": "198.19.0.11", "mac": "02:00:00:00:02:11", "interface": "eth1"}],
        "virtual_server": [{"address": "198.18.0.100", "port": 53, "protocol": "udp", "scheduler": "rr",
                            "real_server": [{"address": "198.19.0.11"}]}],
        "timeouts": {"udp": 30}}))
    d.handle(udp_frame(C, D0, "198.18.0.10", "198.18.0.100", 5000, 53, b"q"), "eth0", 0.0)
    (conn,) = list(d.table)
    assert conn.expires == 30.0
    dest = d.services[0].dests[0]
    assert (dest.active, dest.inactive) == (0, 1)


def test_rst_never_creates_a_flow_and_non_syn_is_dropped():
    d = Director(cfg())
    assert d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, RST | SYN), "eth0", 0) == \
        [Drop("tcp_rst_no_conn")]
    assert d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, ACK), "eth0", 0) == [Drop("tcp_no_conn")]
    assert len(d.table) == 0


def test_sloppy_tcp_schedules_mid_stream_ack():
    d = Director(cfg(table={"sloppy_tcp": True}))
    out = d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, ACK), "eth0", 0)
    assert [type(a) for a in out] == [Send]
    assert len(d.table) == 1


def test_syn_on_time_wait_flow_is_rescheduled():
    d = Director(cfg())
    first = dst_of(d.handle(syn(), "eth0", 0.0))
    (conn,) = list(d.table)
    conn.state = 5  # TIME_WAIT
    second = dst_of(d.handle(syn(), "eth0", 1.0))
    assert second != first  # rr moved on: a new flow, not the old one
    assert d.events["conns_reused"] == 1


def test_quiescent_server_keeps_its_flows_and_gets_no_new_ones():
    d = Director(cfg())
    first = dst_of(d.handle(syn(cport=1), "eth0", 0.0))
    svc = d.services[0]
    dest = next(x for x in svc.dests if x.label.startswith(first))
    dest.weight = 0
    svc.scheduler.update(svc.dests)
    assert dst_of(d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, ACK, seq=1001), "eth0", 1)) \
        == first
    for p in range(2, 8):
        assert dst_of(d.handle(syn(cport=p), "eth0", 1.0)) != first


@pytest.mark.parametrize("expire", [True, False])
def test_removed_server_flows_follow_expire_nodest_conn(expire):
    d = Director(cfg(expire_nodest_conn=expire))
    first = dst_of(d.handle(syn(cport=1), "eth0", 0.0))
    dest = next(x for x in d.services[0].dests if x.label.startswith(first))
    dest.available = False
    out = d.handle(tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 1, 80, ACK, seq=1001), "eth0", 1)
    if expire:
        assert out == [Drop("dest_unavailable")] and len(d.table) == 0
    else:
        assert dst_of(out) == first


def test_unknown_neighbor_is_resolved_by_arp_with_a_bounded_queue():
    d = Director(cfg(neighbors=[], table={"neighbor_queue": 2}))
    out = d.handle(syn(cport=1), "eth0", 0.0)
    kinds = [(type(a).__name__, getattr(a, "kind", None)) for a in out]
    assert kinds == [("Send", "resolve"), ("Hold", None)]
    req = dpkt.ethernet.Ethernet(out[0].frame)
    assert req.dst == b"\xff" * 6 and req.data.op == 1
    assert dpkt.utils.inet_to_str(req.data.tpa) == "198.19.0.11"
    assert dpkt.utils.inet_to_str(req.data.spa) == "198.19.0.1"
    # a retransmitted SYN queues too; the third packet overflows the queue
    assert [type(a) for a in d.handle(syn(cport=1), "eth0", 0.1)] == [Hold]
    assert d.handle(syn(cport=1), "eth0", 0.2) == [Drop("neighbor_queue_full")]
    # the reply releases both held frames to the learned MAC
    rs_mac = "02:00:00:00:02:11"
    out = d.handle(arp_frame(rs_mac, D1, 2, rs_mac, "198.19.0.11", D1, "198.19.0.1"), "eth1", 0.3)
    assert [a.kind for a in out] == ["forward", "forward"]
    assert all(dpkt.ethernet.Ethernet(a.frame).dst == bytes.fromhex("020000000211") for a in out)


def test_unresolved_neighbor_gives_up_after_three_requests():
    d = Director(cfg(neighbors=[]))
    d.handle(syn(cport=1), "eth0", 0.0)
    resolves = 0
    drops = []
    for t in (1.0, 2.0, 3.0, 4.0):
        for a in d.tick(t):
            if isinstance(a, Send):
                resolves += 1
            else:
                drops.append(a)
    assert resolves == 2  # plus the first one: three requests in all
    assert drops == [Drop("neighbor_unresolved")]
    assert d.neigh.pending == {}


def test_non_df_packet_larger_than_egress_mtu_is_fragmented():
    d = Director(cfg(interfaces=[{"name": "eth0", "mac": D0, "addresses": ["198.18.0.1/24"]},
                                 {"name": "eth1", "mac": D1, "addresses": ["198.19.0.1/24"], "mtu": 576}]))
    out = d.handle(syn(payload=b"a" * 1000, df=False), "eth0", 0.0)
    frags = [dpkt.ethernet.Ethernet(a.frame).data for a in out]
    assert len(frags) == 2
    assert [f.len for f in frags] == [572, 20 + 20 + 1000 - 552]
    assert frags[0].mf == 1 and frags[0].offset == 0 and frags[1].mf == 0 and frags[1].offset * 8 == 552
    whole = b"".join(a.frame[14 + 20:] for a in out)
    tcp = dpkt.tcp.TCP(whole)
    assert tcp.dport == 8080 and tcp.data == b"a" * 1000


def test_df_packet_larger_than_egress_mtu_gets_frag_needed():
    d = Director(cfg(interfaces=[{"name": "eth0", "mac": D0, "addresses": ["198.18.0.1/24"]},
                                 {"name": "eth1", "mac": D1, "addresses": ["198.19.0.1/24"], "mtu": 576}]))
    out = d.handle(syn(payload=b"a" * 1000, df=True), "eth0", 0.0)
    assert isinstance(out[0], Send) and out[0].interface == "eth0" and out[1] == Drop("frag_needed")
    icmp = dpkt.ethernet.Ethernet(out[0].frame).data.data
    assert (icmp.type, icmp.code) == (3, 4)
    assert bytes(icmp.data)[2:4] == (576).to_bytes(2, "big")


@pytest.mark.parametrize("target,ifname,src_mac,dmac,src", [
    ("198.18.0.100", "eth0", C, D0, "198.18.0.10"),    # VIP
    ("198.18.0.1", "eth0", C, D0, "198.18.0.10"),      # DIP
    ("198.19.0.1", "eth1", "02:00:00:00:02:11", D1, "198.19.0.11"),
])
def test_echo_request_to_director_addresses_is_answered(target, ifname, src_mac, dmac, src):
    from pylvs.testing import icmp_frame

    d = Director(cfg())
    body = (7).to_bytes(2, "big") + (1).to_bytes(2, "big") + b"ping!"
    out = d.handle(icmp_frame(src_mac, dmac, src, target, 8, 0, body, ident=99), ifname, 0.0)
    (s,) = out
    assert s.interface == ifname and s.kind == "reply"
    want = icmp_frame(dmac, src_mac, target, src, 0, 0, body, ident=1)
    assert s.frame == want


def test_echo_policy_drop_and_ping_to_foreign_address():
    from pylvs.testing import icmp_frame

    d = Director(cfg(table={"icmp_echo": "drop"}))
    assert d.handle(icmp_frame(C, D0, "198.18.0.10", "198.18.0.100", 8, 0, b"\0\1\0\1"), "eth0", 0) == \
        [Drop("icmp_unsupported")]
    assert d.handle(icmp_frame(C, D0, "198.18.0.10", "198.18.0.77", 8, 0, b"\0\1\0\1"), "eth0", 0) == \
        [Drop("not_for_service")]
