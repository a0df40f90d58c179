"""The ctl's requests through ``ControlPlane.handle`` (no socket, no event loop: health checks stay off).

Every edit is checked by what ``list`` shows afterwards; every refused request must name what is wrong and
leave the running configuration and the ``list`` snapshot exactly as they were."""

from __future__ import annotations

import copy
import pathlib
import tomllib

import pytest

from pylvs.config import load_config, parse_config
from pylvs.control.plane import ControlPlane
from pylvs.core.pipeline import Director, Send
from pylvs.testing import tcp_frame

pytestmark = pytest.mark.once

ROOT = pathlib.Path(__file__).resolve().parents[2]
C, D0 = "02:00:00:00:00:10", "02:00:00:00:01:01"
HTTP = {"protocol": "tcp", "address": "198.18.0.100", "port": 80}
DNS = {"protocol": "udp", "address": "198.18.0.100", "port": 53}
RS11 = {"address": "198.19.0.11", "port": 8080}
COUNTERS = ("conns", "pkts_in", "pkts_out", "bytes_in", "bytes_out", "rate", "active", "inactive", "persist")


@pytest.fixture
def cp():
    d = Director(load_config(ROOT / "examples" / "nat.toml"))
    return ControlPlane(d, config_path=None, ctl_socket="", metrics="")


def ok(cp, req):
    ans = cp.handle(req)
    assert ans["ok"] is True, ans
    return ans


def listing(cp):
    return ok(cp, {"cmd": "list"})["result"]


def svc(snap, proto, port):
    (s,) = [s for s in snap["services"] if (s["protocol"], s["port"]) == (proto, port)]
    return s


def servers(snap, proto="tcp", port=80):
    return {(r["address"], r["port"]): (r["weight"], r["config_weight"], r["state"])
            for r in svc(snap, proto, port)["real_servers"]}


def without_counters(snap):
    out = copy.deepcopy(snap["services"])
    for s in out:
        for o in [s, *s["real_servers"]]:
            for k in COUNTERS:
                o.pop(k, None)
    return out


# --------------------------------------------------------------------------- every verb

def test_ping_list_timeouts(cp):
    assert cp.handle({"cmd": "ping"}) == {"ok": True, "result": "pong"}
    snap = listing(cp)
    assert [(s["protocol"], s["port"], s["scheduler"]) for s in snap["services"]] == [("tcp", 80, "wrr"),
                                                                                     ("udp", 53, "rr")]
    assert servers(snap) == {("198.19.0.11", 8080): (1, 1, "ready"), ("198.19.0.12", 8080): (1, 1, "ready"),
                             ("198.19.0.13", 8080): (2, 2, "ready")}
    assert ok(cp, {"cmd": "timeouts"})["result"]["timeouts"] == {"tcp": 900.0, "tcpfin": 120.0, "udp": 300.0}


def test_add_edit_delete_service(cp):
    new = {"protocol": "tcp", "address": "198.18.0.101", "port": 443}
    ans = ok(cp, {"cmd": "add-service", "service": new, "set": {"scheduler": "rr", "real_server": [
        {"address": "198.19.0.12", "port": 8443, "weight": 5}]}})
    assert ans["done"] == "service TCP 198.18.0.101:443 added"
    assert ans["changes"] == ["service TCP 198.18.0.101:443 added"]
    snap = listing(cp)
    assert svc(snap, "tcp", 443)["address"] == "198.18.0.101" and svc(snap, "tcp", 443)["scheduler"] == "rr"
    assert servers(snap, "tcp", 443) == {("198.19.0.12", 8443): (5, 5, "ready")}
    assert cp.director.find_service(6, bytes([198, 18, 0, 101]), 443) is not None

    ans = ok(cp, {"cmd": "edit-service", "service": new, "set": {"scheduler": "sh", "sh_port": True,
                                                                 "persistence_timeout": 60}})
    assert ans["done"] == "service TCP 198.18.0.101:443 updated"
    s = svc(listing(cp), "tcp", 443)
    assert (s["scheduler"], s["flags"], s["persistent"]) == ("sh", ["sh-port"], 60.0)

    ok(cp, {"cmd": "delete-service", "service": new})
    assert [(s["protocol"], s["port"]) for s in listing(cp)["services"]] == [("tcp", 80), ("udp", 53)]
    assert bytes([198, 18, 0, 101]) not in cp.director.local_addrs


def test_add_edit_delete_server(cp):
    rs = {"address": "198.19.0.14", "port": 8080}
    assert ok(cp, {"cmd": "add-server", "service": HTTP, "server": rs, "set": {"weight": 3}})["done"] == \
        "real server 198.19.0.14:8080 of TCP 198.18.0.100:80 added"
    assert servers(listing(cp))[("198.19.0.14", 8080)] == (3, 3, "ready")
    ok(cp, {"cmd": "edit-server", "service": HTTP, "server": rs, "set": {"weight": 9, "state": "drain"}})
    assert servers(listing(cp))[("198.19.0.14", 8080)] == (0, 9, "drain")
    ok(cp, {"cmd": "delete-server", "service": HTTP, "server": rs})
    assert ("198.19.0.14", 8080) not in servers(listing(cp))
    # a server's port defaults to the service's
    ok(cp, {"cmd": "add-server", "service": DNS, "server": {"address": "198.19.0.14"}})
    assert servers(listing(cp), "udp", 53)[("198.19.0.14", 53)] == (1, 1, "ready")


def test_weight_drain_maint_ready(cp):
    base = servers(listing(cp))
    ok(cp, {"cmd": "weight", "service": HTTP, "server": RS11, "weight": 4})
    assert servers(listing(cp)) == {**base, ("198.19.0.11", 8080): (4, 4, "ready")}
    for state in ("drain", "maint"):
        assert ok(cp, {"cmd": state, "service": HTTP, "server": RS11})["done"] == \
            f"real server 198.19.0.11:8080 of TCP 198.18.0.100:80: {state}"
        assert servers(listing(cp)) == {**base, ("198.19.0.11", 8080): (0, 4, state)}
    ok(cp, {"cmd": "ready", "service": HTTP, "server": RS11})
    assert servers(listing(cp)) == {**base, ("198.19.0.11", 8080): (4, 4, "ready")}
    d11 = cp.director.services[0].dests[0]
    assert (d11.available, d11.weight, d11.admin) == (True, 4, "ready")


def test_zero_and_conns(cp):
    d = cp.director
    syn = tcp_frame(C, D0, "198.18.0.10", "198.18.0.100", 40000, 80, 0x02)
    assert [type(a) for a in d.handle(syn, "eth0", 1.0)] == [Send]
    (row,) = ok(cp, {"cmd": "conns"})["result"]
    assert {k: row[k] for k in ("protocol", "state", "client", "virtual", "mode")} == {
        "protocol": "tcp", "state": "SYN_RECV", "client": "198.18.0.10:40000", "virtual": "198.18.0.100:80",
        "mode": "nat"}
    assert ok(cp, {"cmd": "conns", "limit": 0})["result"] == []
    before = svc(listing(cp), "tcp", 80)
    assert (before["conns"], before["pkts_in"]) == (1, 1)
    assert ok(cp, {"cmd": "zero", "service": HTTP})["done"] == "counters zeroed (1 services)"
    after = svc(listing(cp), "tcp", 80)
    assert (after["conns"], after["pkts_in"], after["bytes_in"]) == (0, 0, 0)
    assert sum(r["conns"] for r in after["real_servers"]) == 0
    # the flow itself is untouched: still counted as a connection of its server
    assert sum(r["inactive"] for r in after["real_servers"]) == 1 and len(d.table) == 1
    assert ok(cp, {"cmd": "zero"})["done"] == "counters zeroed (2 services)"


def test_save_loads_back_to_the_running_config_and_a_fresh_director_lists_the_same(cp):
    d = cp.director
    for req in [
        {"cmd": "add-service", "service": {"protocol": "tcp", "address": "198.18.0.102", "port": 25},
         "set": {"scheduler": "lc", "expire_nodest_conn": True,
                 "health_check": {"type": "http", "path": "/ok", "body": "up \"fine\""},
                 "sorry_server": {"address": "198.19.0.13", "port": 2525}}},
        {"cmd": "add-server", "service": {"protocol": "tcp", "address": "198.18.0.102", "port": 25},
         "server": {"address": "198.19.0.12"}, "set": {"health_check": {"type": "none"}}},
        {"cmd": "weight", "service": HTTP, "server": RS11, "weight": 65535},
        {"cmd": "drain", "service": HTTP, "server": {"address": "198.19.0.12", "port": 8080}},
        {"cmd": "maint", "service": DNS, "server": {"address": "198.19.0.13", "port": 5353}},
        {"cmd": "delete-server", "service": DNS, "server": {"address": "198.19.0.11", "port": 5353}},
        {"cmd": "edit-service", "service": DNS, "set": {"scheduler": "mh", "sh_fallback": True}},
    ]:
        ok(cp, req)
    text = ok(cp, {"cmd": "save"})["result"]
    assert text.startswith("# pylvs ctl save: the running configuration")
    saved = parse_config(tomllib.loads(text), d.config.file)
    assert saved == d.config
    fresh = ControlPlane(Director(parse_config(tomllib.loads(text), "saved.toml")), config_path=None,
                         ctl_socket="", metrics="")
    assert without_counters(listing(fresh)) == without_counters(listing(cp))
    assert servers(listing(fresh)) == {("198.19.0.11", 8080): (65535, 65535, "ready"),
                                       ("198.19.0.12", 8080): (0, 1, "drain"),
                                       ("198.19.0.13", 8080): (2, 2, "ready")}


# --------------------------------------------------------------------------- refusals change nothing

BAD = [
    ({"cmd": "delete-service", "service": {"protocol": "tcp", "address": "198.18.0.100", "port": 81}},
     "no service TCP 198.18.0.100:81"),
    ({"cmd": "drain", "service": {"protocol": "udp", "address": "198.18.0.100", "port": 80}, "server": RS11},
     "no service UDP 198.18.0.100:80"),
    ({"cmd": "delete-server", "service": HTTP, "server": {"address": "198.19.0.99", "port": 8080}},
     "no real server 198.19.0.99:8080 of TCP 198.18.0.100:80"),
    ({"cmd": "weight", "service": HTTP, "server": {"address": "198.19.0.11", "port": 80}, "weight": 2},
     "no real server 198.19.0.11:80 of TCP 198.18.0.100:80"),
    ({"cmd": "add-service", "service": HTTP}, "service TCP 198.18.0.100:80 already exists"),
    ({"cmd": "add-server", "service": HTTP, "server": RS11},
     "real server 198.19.0.11:8080 of TCP 198.18.0.100:80 already exists"),
    ({"cmd": "weight", "service": HTTP, "server": RS11, "weight": -1},
     "virtual_server[0].real_server[0].weight: -1 is out of range 0..65535"),
    ({"cmd": "weight", "service": HTTP, "server": RS11, "weight": 70000},
     "virtual_server[0].real_server[0].weight: 70000 is out of range 0..65535"),
    ({"cmd": "weight", "service": HTTP, "server": RS11, "weight": "x"},
     "virtual_server[0].real_server[0].weight: expected an integer, got string 'x'"),
    ({"cmd": "weight", "service": HTTP, "server": RS11, "weight": True},
     "virtual_server[0].real_server[0].weight: expected an integer, got boolean true"),
    ({"cmd": "weight", "service": HTTP, "server": RS11}, "virtual_server[0].real_server[0].weight: expected an"),
    ({"cmd": "edit-server", "service": HTTP, "server": RS11, "set": {"wieght": 3}},
     "virtual_server[0].real_server[0].wieght: unknown key 'wieght' (did you mean 'weight'?"),
    ({"cmd": "edit-service", "service": DNS, "set": {"colour": "red"}},
     "virtual_server[1].colour: unknown key 'colour'"),
    ({"cmd": "add-service", "service": {"protocol": "tcp", "address": "198.18.0.101", "port": 1}, "set": {"x": 1}},
     "virtual_server[2].x: unknown key 'x'"),
    ({"cmd": "edit-service", "service": HTTP, "set": {"scheduler": "fifo"}},
     "virtual_server[0].scheduler: invalid scheduler 'fifo' (expected one of: rr, wrr, sh, lc, wlc, mh)"),
    ({"cmd": "edit-service", "service": HTTP, "set": {"port": 81}}, "edit-service cannot change 'port'"),
    ({"cmd": "edit-service", "service": HTTP, "set": {"real_server": []}}, "edit-service cannot change 'real_server'"),
    ({"cmd": "edit-server", "service": HTTP, "server": RS11, "set": {"address": "198.19.0.14"}},
     "edit-server cannot change 'address'"),
    ({"cmd": "edit-server", "service": HTTP, "server": RS11, "set": {"mode": "dr"}},
     "virtual_server[0].real_server[0].port: DR/TUN cannot map ports"),
    ({"cmd": "edit-server", "service": HTTP, "server": RS11, "set": {"health_check": {"type": "http", "send": "x"}}},
     "virtual_server[0].real_server[0].health_check.send: 'send' does not apply to a 'http' check"),
    ({"cmd": "add-server", "service": HTTP, "server": {"address": "fd00::1", "port": 80}},
     "virtual_server[0].real_server[3].address: real server fd00::1 is IPv6"),
    ({"cmd": "edit-server", "service": HTTP, "server": RS11, "set": [1]}, "'set' must be an object"),
    ({"cmd": "drain"}, "request needs 'service': an object"),
    ({"cmd": "drain", "service": "tcp 198.18.0.100:80", "server": RS11}, "request needs 'service': an object"),
    ({"cmd": "drain", "service": HTTP}, "request needs 'server': an object"),
    ({"cmd": "drain", "service": HTTP, "server": {"address": 11, "port": 8080}}, "server must be {"),
    ({"cmd": "drain", "service": HTTP, "server": {"address": "198.19.0.11", "port": "8080"}}, "server must be {"),
    ({"cmd": "drain", "service": {"protocol": "icmp", "address": "198.18.0.100", "port": 80}, "server": RS11},
     "service must be {"),
    ({"cmd": "drain", "service": {"protocol": "tcp", "address": "198.18.0.100", "port": True}, "server": RS11},
     "service must be {"),
    ({"cmd": "drain", "service": {"protocol": "tcp", "address": "198.18.0.100"}, "server": RS11}, "service must be {"),
    ({"cmd": "zero", "service": {"protocol": "tcp", "address": "198.18.0.9", "port": 80}},
     "no service TCP 198.18.0.9:80"),
    ({"cmd": "zero", "service": []}, "request needs 'service': an object"),
    ({"cmd": "frobnicate"}, "unknown command 'frobnicate' (known: add-service,"),
    ({"cmd": "reload"}, "no configuration file to reload from"),
    ({"cmd": 7}, 'a request is a JSON object with a string "cmd"'),
    ({}, 'a request is a JSON object with a string "cmd"'),
    (["list"], 'a request is a JSON object with a string "cmd"'),
    ("list", 'a request is a JSON object with a string "cmd"'),
    (None, 'a request is a JSON object with a string "cmd"'),
]


@pytest.mark.parametrize("req,message", BAD, ids=[f"{i}-{r.get('cmd') if isinstance(r, dict) else r}"
                                                  for i, (r, _) in enumerate(BAD)])
def test_bad_request_is_refused_and_changes_nothing(cp, req, message):
    d = cp.director
    cfg, services, snap = d.config, list(d.services), listing(cp)
    weights = [(x.weight, x.admin, x.available) for s in d.services for x in s.all_dests()]
    ans = cp.handle(copy.deepcopy(req))
    assert ans["ok"] is False and set(ans) == {"ok", "error"}
    assert message in ans["error"], ans["error"]
    assert "internal error" not in ans["error"]
    assert d.config is cfg and d.services == services
    assert [(x.weight, x.admin, x.available) for s in d.services for x in s.all_dests()] == weights
    assert listing(cp) == snap


def test_refusals_after_edits_keep_the_edited_state(cp):
    ok(cp, {"cmd": "weight", "service": HTTP, "server": RS11, "weight": 7})
    cfg, snap = cp.director.config, listing(cp)
    assert cp.handle({"cmd": "weight", "service": HTTP, "server": RS11, "weight": 65536})["ok"] is False
    assert cp.director.config is cfg and listing(cp) == snap
    assert servers(snap)[("198.19.0.11", 8080)] == (7, 7, "ready")


def test_zero_with_a_malformed_address_is_a_plain_refusal(cp):
    ans = cp.handle({"cmd": "zero", "service": {"protocol": "tcp", "address": "not-an-ip", "port": 80}})
    assert ans["ok"] is False
    assert "internal error" not in ans["error"]


@pytest.mark.parametrize("req", [
    {"cmd": "add-service", "service": {"protocol": "tcp", "address": "198.18.0.100", "port": 8443},
     "set": {"port": 9090}},
    {"cmd": "add-server", "service": HTTP, "server": {"address": "198.19.0.14", "port": 8080}, "set": {"port": 9}},
], ids=["service", "server"])
def test_add_cannot_override_the_named_key(cp, req):
    snap = listing(cp)
    ans = cp.handle(req)
    assert ans["ok"] is False
    assert listing(cp) == snap
