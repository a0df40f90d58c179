"""Reconfiguration of a running Director (``Director.reconfigure`` / ``pylvs.core.reconfig``), health verdicts
and the sorry server, checked with real frames through ``Director.handle`` / ``handle_batch``."""

from __future__ import annotations

import copy
import pathlib
import tomllib

import dpkt
import pytest

from pylvs.config import parse_config
from pylvs.core.batch import Batch
from pylvs.core.pipeline import Director, Drop, Send
from pylvs.core.reconfig import ReconfigError
from pylvs.testing import arp_frame, ip4, tcp_frame

ROOT = pathlib.Path(__file__).resolve().parents[2]
C_MAC, D0, D1 = "02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02"
CIP, VIP, LIP = "198.18.0.10", "198.18.0.100", "198.19.0.250"
RS_MAC = {o: f"02:00:00:00:02:{o}" for o in (11, 12, 13)}
SYN, ACK, PSH = 0x02, 0x10, 0x08
EST = 900.0  # the ESTABLISHED timeout


def example(name="nat", **vs0):
    doc = tomllib.loads((ROOT / "examples" / f"{name}.toml").read_text())
    doc["virtual_server"][0].update(vs0)
    return doc


def cfg(doc):
    return parse_config(doc, "test.toml")


def variant(doc, fn):
    new = copy.deepcopy(doc)
    fn(new)
    return cfg(new)


def servers_of(doc, keep=None, edit=None):
    """``doc`` with the HTTP service's servers cut to ``keep`` (last octets), ``edit`` {octet: {key: value}}."""
    def fn(new):
        rss = new["virtual_server"][0]["real_server"]
        octet = {id(rs): int(rs["address"].rsplit(".", 1)[1]) for rs in rss}
        rss[:] = [dict(rs, **(edit or {}).get(octet[id(rs)], {})) for rs in rss
                  if keep is None or octet[id(rs)] in keep]
    return variant(doc, fn)


def syn(cport):
    return tcp_frame(C_MAC, D0, CIP, VIP, cport, 80, SYN, seq=1000)


def data(cport, n=0):
    return tcp_frame(C_MAC, D0, CIP, VIP, cport, 80, ACK | PSH, seq=1001 + n, ack=5001, payload=b"x")


def target(actions):
    """The last octet of the server a forwarded frame went to, or the drop reason."""
    if len(actions) == 1 and isinstance(actions[0], Drop):
        return actions[0].reason
    (s,) = actions
    assert isinstance(s, Send) and s.interface == "eth1" and s.kind == "forward", actions
    ip = dpkt.ethernet.Ethernet(s.frame).data
    assert s.frame[:6] == bytes.fromhex(RS_MAC[ip.dst[3]].replace(":", ""))
    return ip.dst[3]


def open_flow(d, cport, now=1.0):
    """SYN, the server's SYN-ACK, the client's ACK: an ESTABLISHED flow; returns (conn, server octet)."""
    rs = target(d.handle(syn(cport), "eth0", now))
    c, _ = d.table.lookup((6, ip4(CIP), cport, ip4(VIP), 80), now)
    reply = tcp_frame(RS_MAC[rs], D1, f"198.19.0.{rs}", ".".join(map(str, c.laddr)), 8080, c.lport,
                      SYN | ACK, seq=5000, ack=1001)
    assert [type(a) for a in d.handle(reply, "eth1", now)] == [Send]
    assert [type(a) for a in d.handle(tcp_frame(C_MAC, D0, CIP, VIP, cport, 80, ACK, seq=1001, ack=5001),
                                      "eth0", now)] == [Send]
    assert c.state_name == "ESTABLISHED"
    return c, rs


def new_flows(d, n, now=2.0, base=41000):
    out = {}
    for i in range(n):
        t = target(d.handle(syn(base + i), "eth0", now))
        out[t] = out.get(t, 0) + 1
    return out


def dest(d, octet, svc=0):
    (x,) = [x for x in d.services[svc].all_dests() if x.addr == ip4(f"198.19.0.{octet}") and x.port == 8080]
    return x


def via_batch(d, frames, now):
    b = Batch(size=len(frames))
    for f in frames:
        b.add(f)
    punted = dict(d.handle_batch(b.buf, b.desc, b.n, "eth0", now))
    return [("fast", d.fast.ifnames[v]) if v >= 0 else ("slow", punted[i]) for i, v, _ in b.results()]


# --------------------------------------------------------------------------- (a) a server removed

@pytest.mark.parametrize("expire", [False, True])
def test_removed_server_keeps_or_expires_its_flow_and_gets_no_new_ones(expire):
    doc = example(expire_nodest_conn=expire)
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    assert a == 13  # wrr starts at the heaviest server
    changes = d.reconfigure(servers_of(doc, keep={11, 12}))
    assert changes == ["service TCP 198.18.0.100:80 updated"]
    assert not dest(d, a).available and dest(d, a) in d.services[0].retired.values()
    if expire:
        assert target(d.handle(data(40000), "eth0", 3.0)) == "dest_unavailable"
        assert not c.alive and len(d.table) == 0 and d.drops["dest_unavailable"] == 1
        assert dest(d, a).active == 0
    else:
        assert target(d.handle(data(40000), "eth0", 3.0)) == a
        back = tcp_frame(RS_MAC[a], D1, f"198.19.0.{a}", CIP, 8080, 40000, ACK, seq=5001, ack=1002)
        assert [type(x) for x in d.handle(back, "eth1", 3.0)] == [Send]
        assert c.alive and dest(d, a).active == 1
    assert new_flows(d, 8, now=4.0) == {11: 4, 12: 4}  # never the removed one; exact wrr split
    assert a not in new_flows(d, 8, now=4.0, base=42000)


# --------------------------------------------------------------------------- (b) a whole service removed

@pytest.mark.parametrize("mode", ["nat", "fullnat"])
@pytest.mark.parametrize("expire", [False, True])
def test_removed_service_keeps_its_addresses_while_its_flows_live(mode, expire):
    doc = example(mode, expire_nodest_conn=expire)
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    svc = d.services[0]
    ours = {ip4(VIP)} | ({ip4(LIP)} if mode == "fullnat" else set())
    version = d.addrs_version
    changes = d.reconfigure(variant(doc, lambda n: n.update(virtual_server=[])))
    assert changes == ["service TCP 198.18.0.100:80 removed (1 flows left to finish)",
                       "service UDP 198.18.0.100:53 removed (0 flows left to finish)"]
    assert d.services == [] and d.retired_services == [svc]  # the idle UDP service is forgotten at once
    assert ours <= d.local_addrs and d.addrs_version == version
    arp = arp_frame(C_MAC, "ff:ff:ff:ff:ff:ff", 1, C_MAC, CIP, "00:00:00:00:00:00", VIP)
    assert [a_.kind for a_ in d.handle(arp, "eth0", 3.0)] == ["reply"]
    assert target(d.handle(syn(41000), "eth0", 3.0)) == "no_service"  # never scheduled
    if expire:
        assert target(d.handle(data(40000), "eth0", 3.0)) == "dest_unavailable"
        last = 3.0
    else:
        assert target(d.handle(data(40000), "eth0", 3.0)) == a
        last = 3.0
        d.tick(last + EST - 1)
        assert c.alive and ours <= d.local_addrs and d.addrs_version == version
        d.tick(last + EST + 1)
    assert len(d.table) == 0 and not c.alive
    assert not ours & d.local_addrs and d.addrs_version == version + len(ours)  # one bump per address let go
    d.tick(last + EST + 2)
    assert d.retired_services == []
    assert target(d.handle(syn(41001), "eth0", last + EST + 3)) == "not_for_service"
    assert target(d.handle(arp, "eth0", last + EST + 3)) == "arp_not_for_us"


# --------------------------------------------------------------------------- (c) weights and drain

@pytest.mark.parametrize("change,window,split", [
    ({11: {"weight": 3}, 12: {"weight": 1}}, 12, {11: 6, 12: 2, 13: 4}),
    ({13: {"weight": 0}}, 8, {11: 4, 12: 4}),
    ({13: {"state": "drain"}, 11: {"weight": 3}}, 8, {11: 6, 12: 2}),
], ids=["weights", "weight0", "drain"])
def test_weight_change_and_drain_keep_flows_and_steer_new_ones(change, window, split):
    doc = example()
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    assert a == 13 and c.fslot >= 0
    x = dest(d, 13)
    d.reconfigure(servers_of(doc, edit=change))
    assert dest(d, 13) is x and x.available and c.fslot >= 0  # still on the fast path
    assert target(d.handle(data(40000), "eth0", 3.0)) == 13
    assert new_flows(d, window) == split
    assert new_flows(d, window, base=42000) == split  # and again: exact per cycle


# --------------------------------------------------------------------------- (d) health verdicts

@pytest.mark.parametrize("expire", [False, True])
@pytest.mark.parametrize("on_failure", ["quiesce", "remove"])
def test_health_down_then_up(on_failure, expire):
    doc = example(expire_nodest_conn=expire, health_check={"type": "tcp", "on_failure": on_failure})
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    svc, x = d.services[0], dest(d, 13)
    assert (a, x.healthy, x.on_failure) == (13, None, on_failure)
    d.set_health(svc, x, False)
    assert d.events["health_down"] == 1 and x.weight == 0
    if on_failure == "quiesce":
        assert x.available and c.fslot >= 0
        assert target(d.handle(data(40000), "eth0", 3.0)) == 13
    else:
        assert not x.available and c.fslot < 0 and c.fslot not in d.fast.conns
        assert target(d.handle(data(40000), "eth0", 3.0)) == ("dest_unavailable" if expire else 13)
        assert c.alive is not expire
    assert new_flows(d, 4) == {11: 2, 12: 2}
    d.set_health(svc, x, False)  # the same verdict again changes nothing
    assert d.events["health_down"] == 1
    d.set_health(svc, x, True)
    assert (x.available, x.weight, d.events["health_up"]) == (True, 2, 1)
    assert new_flows(d, 8, base=42000) == {11: 2, 12: 2, 13: 4}
    # a reload keeps the verdict of a kept, checked server
    d.set_health(svc, x, False)
    d.reconfigure(servers_of(doc, edit={11: {"weight": 5}}))
    assert x.healthy is False and x.weight == 0


# --------------------------------------------------------------------------- (e) the sorry server

def test_sorry_server_only_while_no_real_server_can_take_new_flows():
    doc = example(sorry_server={"address": "198.19.0.13", "port": 8080})
    doc["virtual_server"][0]["real_server"] = doc["virtual_server"][0]["real_server"][:2]
    d = Director(cfg(doc))
    svc = d.services[0]
    assert not svc.sorry_in_use() and new_flows(d, 4, base=40000) == {11: 2, 12: 2}
    c, a = open_flow(d, 39000)
    assert a in (11, 12)
    d.reconfigure(servers_of(doc, edit={11: {"state": "drain"}, 12: {"state": "maint"}}))
    assert svc.sorry_in_use() and new_flows(d, 3, base=41000) == {13: 3}
    assert svc.sorry.conns == 3
    d.reconfigure(servers_of(doc, edit={12: {"state": "maint"}}))  # .11 ready again
    assert not svc.sorry_in_use() and new_flows(d, 3, base=42000) == {11: 3}
    assert target(d.handle(data(41000), "eth0", 3.0)) == 13  # a sorry flow goes on
    d.set_health(svc, dest(d, 11), False)  # quiesced by its check: none usable
    assert new_flows(d, 2, base=43000) == {13: 2}
    d.set_health(svc, dest(d, 11), True)
    assert new_flows(d, 2, base=44000) == {11: 2}
    d.reconfigure(servers_of(doc, edit={11: {"weight": 0}, 12: {"weight": 0}}))
    assert new_flows(d, 2, base=45000) == {13: 2}
    d.reconfigure(servers_of(doc, keep=set()))
    assert new_flows(d, 1, base=46000) == {13: 1}
    d.reconfigure(cfg(doc))
    assert new_flows(d, 4, base=47000) == {11: 2, 12: 2} and svc.sorry.conns == 8
    no_sorry = copy.deepcopy(doc)
    del no_sorry["virtual_server"][0]["sorry_server"]
    d.reconfigure(cfg(no_sorry))
    assert svc.sorry is None
    assert target(d.handle(data(41000), "eth0", 3.0)) == 13  # its flows go on like a removed server's
    assert new_flows(d, 1, base=48000) == {11: 1}
    d.reconfigure(servers_of(no_sorry, keep=set()))  # no sorry server: an empty pool drops
    assert target(d.handle(syn(49000), "eth0", 2.0)) == "no_real_server"


# --------------------------------------------------------------------------- (f) refused whole

@pytest.mark.parametrize("edit,message", [
    (lambda n: n["interface"][1].update(mtu=1400), "the interfaces changed"),
    (lambda n: n["interface"][1].update(addresses=["198.19.0.1/24", "198.19.1.1/24"]), "the interfaces changed"),
    (lambda n: n["interface"][0].update(mac="02:00:00:00:01:99"), "the interfaces changed"),
    (lambda n: n.update(table={"max_connections": 5}), "table.max_connections changed (1048576 -> 5)"),
], ids=["mtu", "address", "mac", "max_connections"])
def test_restart_only_changes_are_refused_and_change_nothing(edit, message):
    doc = example()
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    old, services, local, version = d.config, list(d.services), set(d.local_addrs), d.addrs_version
    weights = [(x.weight, x.available) for s in d.services for x in s.dests]

    def both(n):
        edit(n)
        n["virtual_server"][0]["real_server"] = n["virtual_server"][0]["real_server"][:1]
        n["virtual_server"].append({"address": "198.18.0.200", "port": 1, "protocol": "tcp"})
        n["timeouts"] = {"established": 5}
    with pytest.raises(ReconfigError) as e:
        d.reconfigure(variant(doc, both))
    assert message in str(e.value)
    assert d.config is old and d.services == services and d.retired_services == []
    assert [(x.weight, x.available) for s in d.services for x in s.dests] == weights
    assert d.local_addrs == local and d.addrs_version == version and d.timeouts["established"] == EST
    assert target(d.handle(data(40000), "eth0", 3.0)) == a and c.fslot >= 0


# --------------------------------------------------------------------------- (g) back again

def test_removed_then_added_back_is_the_same_server_with_its_counters():
    doc = example()
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    x = dest(d, a)
    d.handle(data(40000), "eth0", 2.0)
    d.fast.fold_counters()
    before = (x.conns, x.pkts_in, x.bytes_in, x.active, x.fid)
    assert before[:2] == (1, 3) and x.active == 1
    d.reconfigure(servers_of(doc, keep={11, 12}))
    d.reconfigure(cfg(doc))
    assert dest(d, a) is x and x in d.services[0].dests and d.services[0].retired == {}
    assert (x.conns, x.pkts_in, x.bytes_in, x.active, x.fid) == before and x.available
    assert target(d.handle(data(40000, 1), "eth0", 3.0)) == a
    # an idle server removed is forgotten (no flow points at it): added back, it starts afresh
    y = dest(d, 11)
    d.reconfigure(servers_of(doc, keep={12, 13}))
    assert d.services[0].retired == {}
    d.reconfigure(cfg(doc))
    assert dest(d, 11) is not y and dest(d, 11).conns == 0


def test_removed_then_added_back_service_is_the_same_service():
    doc = example()
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    svc, x = d.services[0], dest(d, a)
    d.reconfigure(variant(doc, lambda n: n["virtual_server"].pop(0)))
    assert d.retired_services == [svc] and not x.available
    d.reconfigure(cfg(doc))
    assert d.services[0] is svc and d.retired_services == [] and x.available
    assert (svc.conns, svc.live, x.conns, x.active) == (1, 1, 1, 1)
    assert target(d.handle(data(40000), "eth0", 3.0)) == a


def test_service_added_back_is_reported():
    doc = example()
    d = Director(cfg(doc))
    open_flow(d, 40000)
    d.reconfigure(variant(doc, lambda n: n["virtual_server"].pop(0)))
    assert d.reconfigure(cfg(doc)) == ["service TCP 198.18.0.100:80 added"]


@pytest.mark.once
def test_churned_server_does_not_leak_fast_path_slots():
    doc = example()
    full, less = cfg(doc), servers_of(doc, keep={12, 13})
    d = Director(full)
    slots = len(d.fast.dests)
    for _ in range(100):
        d.reconfigure(less)
        d.reconfigure(full)
    assert len(d.fast.dests) <= slots + 1 and dest(d, 11).fid <= slots + 1


# --------------------------------------------------------------------------- (h) the fast path

@pytest.mark.parametrize("expire", [False, True])
def test_removed_server_is_evicted_from_the_fast_path(expire):
    doc = example(expire_nodest_conn=expire)
    d = Director(cfg(doc))
    c, a = open_flow(d, 40000)
    other, b = open_flow(d, 40001)
    assert b != a and c.fslot >= 0 and other.fslot >= 0
    assert via_batch(d, [data(40000), data(40001)], 2.0) == [("fast", "eth1"), ("fast", "eth1")]
    slot = c.fslot
    d.reconfigure(servers_of(doc, keep={11, 12, 13} - {a}))
    assert c.fslot == -1 and slot not in d.fast.conns and len(d.fast.table) == 1
    assert d.fast.conns == {other.fslot: other}  # the kept server's flow stays fast
    (how, got), (how2, _) = via_batch(d, [data(40000, 1), data(40001, 1)], 3.0)
    assert (how, how2) == ("slow", "fast")
    assert target(got) == ("dest_unavailable" if expire else a)
    assert c.fslot == -1 and len(d.fast.table) == 1  # never handed back while its server is gone
    if not expire:
        assert [h for h, _ in via_batch(d, [data(40000, 2)], 4.0)] == ["slow"]
        assert c.expires == 4.0 + EST
