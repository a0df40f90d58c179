"""Tests for pylvs.config: the example files, the validation errors (with their exact key paths) of the
file, services and values, and mode resolution / --mode override.  Interfaces, routes, neighbours and the
TAP host address: tests/unit/test_config_interfaces.py."""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from config_helpers import (
    EXAMPLES,
    IFACES,
    RS,
    VS,
    base_dict,
    dict_error,
    load_error,
    write,
)

from pylvs.config import (
    HealthCheck,
    DEFAULT_TIMEOUTS,
    MODES,
    SCHEDULERS,
    TCP_STATES,
    Config,
    ConfigError,
    Interface,
    Neighbor,
    RealServer,
    Table,
    VirtualServer,
    load_config,
    parse_config,
)

# --------------------------------------------------------------------------- examples

LAB_NEIGHBORS = {
    (IPv4Address("198.19.0.11"), "eth1"): bytes.fromhex("020000000211"),
    (IPv4Address("198.19.0.12"), "eth1"): bytes.fromhex("020000000212"),
    (IPv4Address("198.19.0.13"), "eth1"): bytes.fromhex("020000000213"),
    (IPv4Address("198.18.0.10"), "eth0"): bytes.fromhex("020000000010"),
}
RIPS = [IPv4Address("198.19.0.11"), IPv4Address("198.19.0.12"), IPv4Address("198.19.0.13")]


@pytest.mark.parametrize("mode,tcp_rport,udp_rport", [
    ("nat", 8080, 5353), ("dr", 80, 53), ("tun", 80, 53), ("fullnat", 8080, 5353),
])
def test_example_loads(mode, tcp_rport, udp_rport):
    cfg = load_config(EXAMPLES / f"{mode}.toml")
    assert isinstance(cfg, Config)
    assert cfg.mode == mode
    assert cfg.file == str(EXAMPLES / f"{mode}.toml")
    assert cfg.interfaces == (
        Interface("eth0", bytes.fromhex("020000000101"), (IPv4Interface("198.18.0.1/24"),)),
        Interface("eth1", bytes.fromhex("020000000102"), (IPv4Interface("198.19.0.1/24"),)),
    )
    assert cfg.interfaces[0].mtu == 1500 and cfg.interfaces[0].driver == "afpacket"
    assert cfg.routes == ()
    assert {(n.address, n.interface): n.mac for n in cfg.neighbors} == LAB_NEIGHBORS
    assert len(cfg.neighbors) == 4
    assert cfg.timeouts == DEFAULT_TIMEOUTS
    assert cfg.table == Table()

    tcp, udp = cfg.virtual_servers
    vip = IPv4Address("198.18.0.100")
    assert (tcp.address, tcp.port, tcp.protocol, tcp.scheduler) == (vip, 80, "tcp", "wrr")
    assert (udp.address, udp.port, udp.protocol, udp.scheduler) == (vip, 53, "udp", "rr")
    # NAT and FULLNAT carry an HTTP health check (the lab's director kernel has an address to send it from)
    check = HealthCheck(type="http", interval=1.0, timeout=0.5, rise=2, fall=2, status=(200, 299)) \
        if mode in ("nat", "fullnat") else None
    assert tcp.health_check == check
    assert tcp.real_servers == tuple(
        RealServer(a, tcp_rport, w, mode, health_check=check) for a, w in zip(RIPS, (1, 1, 2)))
    assert udp.real_servers == tuple(RealServer(a, udp_rport, 1, mode) for a in RIPS)
    for vs in (tcp, udp):
        assert vs.mode == mode
        if mode == "fullnat":
            assert vs.local_addresses == (IPv4Address("198.19.0.250"),)
            assert vs.toa is True
        else:
            assert vs.local_addresses == ()


def test_examples_cover_every_mode():
    assert {p.stem for p in EXAMPLES.glob("*.toml")} >= set(MODES)


def test_constants():
    assert MODES == ("nat", "dr", "tun", "fullnat")
    assert SCHEDULERS == ("rr", "wrr", "sh", "lc", "wlc", "mh")
    assert len(TCP_STATES) == 11 and TCP_STATES[0] == "NONE"
    assert {s.lower() for s in TCP_STATES} | {"udp", "icmp"} == set(DEFAULT_TIMEOUTS)
    assert DEFAULT_TIMEOUTS["established"] == 900 and DEFAULT_TIMEOUTS["udp"] == 300
    assert DEFAULT_TIMEOUTS["none"] == 2 and DEFAULT_TIMEOUTS["icmp"] == 60


def test_defaults_and_objects_are_frozen():
    cfg = parse_config(base_dict())
    assert cfg.file == "<config>" and cfg.mode == "nat"
    vs = cfg.virtual_servers[0]
    assert vs == VirtualServer(IPv4Address("198.18.0.100"), 80, "tcp",
                               real_servers=(RealServer(IPv4Address("198.19.0.11"), 80, 1, "nat"),))
    assert vs.scheduler == "wlc" and vs.persistence_netmask == 32 and vs.local_port_range == (1024, 65535)
    assert vs.toa_kind == 254 and vs.toa and not vs.toa_on_syn and not vs.expire_nodest_conn
    with pytest.raises(AttributeError):
        vs.port = 81  # type: ignore[misc]
    assert cfg.table == Table(1048576, False, "reply", 64)


def test_full_featured_config(tmp_path):
    cfg = load_config(write(tmp_path, IFACES + """
        [[interface]]
        name = "tap0"
        addresses = ["192.0.2.1/24", "2001:db8::1/64"]
        mtu = 9000
        driver = "tap"

        [[route]]
        prefix = "203.0.113.0/24"
        via = "198.19.0.254"
        interface = "eth1"

        [[route]]
        prefix = "2001:db8:1::/48"
        via = "2001:db8::fe"
        interface = "tap0"

        [[route]]
        prefix = "192.0.2.128/25"
        interface = "tap0"

        [[neighbor]]
        address = "2001:db8::fe"
        mac = "AA:BB:CC:DD:EE:FE"
        interface = "tap0"

        [[virtual_server]]
        address = "198.18.0.100"
        port = 443
        protocol = "tcp"
        scheduler = "sh"
        sh_port = true
        sh_fallback = true
        persistence_timeout = 300
        persistence_netmask = 24
        local_addresses = ["198.19.0.250", "198.19.0.251"]
        local_port_range = [20000, 30000]
        toa_kind = 253
        toa_on_syn = true
        expire_nodest_conn = true

          [[virtual_server.real_server]]
          address = "198.19.0.11"
          weight = 0
          mode = "dr"

          [[virtual_server.real_server]]
          address = "198.19.0.12"
          port = 8443
          weight = 65535

        [[virtual_server]]
        address = "198.18.0.100"
        port = 443
        protocol = "udp"
        mode = "fullnat"
        local_addresses = ["198.19.0.250"]

        [timeouts]
        established = 7200
        udp = 0.5

        [table]
        max_connections = 1
        sloppy_tcp = true
        icmp_echo = "drop"
        neighbor_queue = 0
    """))
    tap = cfg.interfaces[2]
    assert tap.mac is None and tap.mtu == 9000 and tap.driver == "tap"
    assert [str(a) for a in tap.addresses] == ["192.0.2.1/24", "2001:db8::1/64"]
    assert cfg.routes[0].prefix == IPv4Network("203.0.113.0/24")
    assert cfg.routes[1].via.version == 6
    assert cfg.routes[2].via is None
    assert cfg.neighbors == (Neighbor(cfg.routes[1].via, bytes.fromhex("aabbccddeefe"), "tap0"),)
    vs, empty = cfg.virtual_servers
    assert vs.sh_port and vs.sh_fallback and vs.persistence_timeout == 300.0
    assert vs.persistence_netmask == 24 and vs.local_port_range == (20000, 30000)
    assert len(vs.local_addresses) == 2 and vs.toa_kind == 253 and vs.toa_on_syn
    assert vs.mode == "nat"
    assert vs.real_servers[0] == RealServer(IPv4Address("198.19.0.11"), 443, 0, "dr")
    assert vs.real_servers[1] == RealServer(IPv4Address("198.19.0.12"), 8443, 65535, "nat")
    assert empty.real_servers == () and empty.mode == "fullnat"   # empty pool is allowed
    assert cfg.timeouts["established"] == 7200 and cfg.timeouts["udp"] == 0.5
    assert cfg.timeouts["syn_recv"] == 60 and set(cfg.timeouts) == set(DEFAULT_TIMEOUTS)
    assert cfg.table == Table(1, True, "drop", 0)


# --------------------------------------------------------------------------- file-level errors

def test_missing_file(tmp_path):
    p = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.path == "" and ei.value.file == str(p)
    assert "cannot read" in ei.value.message
    assert str(ei.value).startswith(f"{p}: cannot read")


def test_toml_syntax_error_has_line_and_column(tmp_path):
    err = load_error(tmp_path, 'mode = "nat"\n[[interface]\nname = "x"\n')
    assert err.path == ""
    assert "TOML syntax error" in err.message and "line 2" in err.message and "column" in err.message


def test_not_utf8(tmp_path):
    p = tmp_path / "bin.toml"
    p.write_bytes(b'mode = "\xff"\n')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert ei.value.path == ""


def test_error_is_picklable_and_str():
    e = ConfigError("a.toml", "x.y", "bad")
    assert str(e) == "a.toml: x.y: bad"
    assert str(ConfigError("a.toml", "", "bad")) == "a.toml: bad"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.file, e2.path, e2.message) == ("a.toml", "x.y", "bad")


# --------------------------------------------------------------------------- unknown keys

@pytest.mark.parametrize("text,path", [
    ("colour = 1\n" + IFACES, "colour"),
    (IFACES + '[[interface]]\nname="e2"\naddresses=["10.0.0.1/8"]\nmtuu=1500\n',
     "interface[2].mtuu"),
    (IFACES + '[[route]]\nprefix="10.0.0.0/8"\ninterface="eth1"\ngateway="198.19.0.9"\n', "route[0].gateway"),
    (IFACES + '[[neighbor]]\naddress="198.19.0.9"\nmac="02:00:00:00:00:09"\ninterface="eth1"\nip="x"\n',
     "neighbor[0].ip"),
    (IFACES + VS + "weight = 3\n", "virtual_server[0].weight"),
    (IFACES + VS + RS + RS + "  wieght = 2\n", "virtual_server[0].real_server[1].wieght"),
    (IFACES + "[timeouts]\nestablished = 1\nfin_wait2 = 3\n", "timeouts.fin_wait2"),
    (IFACES + "[table]\nmax_conns = 3\n", "table.max_conns"),
])
def test_unknown_keys(tmp_path, text, path):
    err = load_error(tmp_path, text)
    assert err.path == path
    assert "unknown key" in err.message and "allowed keys" in err.message


def test_unknown_key_suggests_and_lists(tmp_path):
    err = load_error(tmp_path, IFACES + VS + RS + RS + "  wieght = 2\n")
    assert "did you mean 'weight'" in err.message
    assert "address, port, weight, mode" in err.message


# --------------------------------------------------------------------------- types and required keys

@pytest.mark.parametrize("mutate,path,fragment", [
    (lambda d: d["virtual_server"][0].update(port=True), "virtual_server[0].port", "expected an integer, got boolean"),
    (lambda d: d["virtual_server"][0].update(port="80"), "virtual_server[0].port", "expected an integer, got string"),
    (lambda d: d["virtual_server"][0].update(port=80.0), "virtual_server[0].port", "expected an integer, got float"),
    (lambda d: d["virtual_server"][0]["real_server"][0].update(weight=True),
     "virtual_server[0].real_server[0].weight", "expected an integer"),
    (lambda d: d["interface"][0].update(mtu=False), "interface[0].mtu", "expected an integer"),
    (lambda d: d["virtual_server"][0].update(persistence_timeout=True),
     "virtual_server[0].persistence_timeout", "expected a number"),
    (lambda d: d["virtual_server"][0].update(toa="yes"), "virtual_server[0].toa", "expected a boolean"),
    (lambda d: d["virtual_server"][0].update(sh_port=1), "virtual_server[0].sh_port", "expected a boolean"),
    (lambda d: d["virtual_server"][0].update(address=3), "virtual_server[0].address", "expected a string"),
    (lambda d: d["interface"][0].update(addresses="198.18.0.1/24"), "interface[0].addresses", "expected an array"),
    (lambda d: d["interface"][0].update(addresses=[1]), "interface[0].addresses[0]", "expected an address string"),
    (lambda d: d["interface"][0].update(name=["eth0"]), "interface[0].name", "expected a string"),
    (lambda d: d.update(mode=1), "mode", "expected a string"),
    (lambda d: d.update(interface=d["interface"][0]), "interface", "array of tables"),
    (lambda d: d["virtual_server"][0].update(real_server={"address": "198.19.0.11"}),
     "virtual_server[0].real_server", "array of tables"),
    (lambda d: d["virtual_server"].append("x"), "virtual_server[1]", "expected a table, got string"),
    (lambda d: d.update(timeouts={"udp": True}), "timeouts.udp", "expected a number"),
    (lambda d: d.update(timeouts=5), "timeouts", "expected a table"),
    (lambda d: d.update(table={"sloppy_tcp": 1}), "table.sloppy_tcp", "expected a boolean"),
    (lambda d: d.update(table={"max_connections": 1.5}), "table.max_connections", "expected an integer"),
    (lambda d: d["virtual_server"][0].update(local_port_range=[1, True]),
     "virtual_server[0].local_port_range", "expected [low, high]"),
    (lambda d: d["virtual_server"][0].update(local_port_range=[1, 2, 3]),
     "virtual_server[0].local_port_range", "expected [low, high]"),
])
def test_wrong_types(mutate, path, fragment):
    data = base_dict()
    mutate(data)
    err = dict_error(data)
    assert err.path == path
    assert fragment in err.message
    assert err.file == "t.toml"


def test_int_accepted_where_float_expected():
    data = base_dict()
    data["virtual_server"][0]["persistence_timeout"] = 60
    data["timeouts"] = {"close": 3, "udp": 1.5}
    cfg = parse_config(data)
    assert cfg.virtual_servers[0].persistence_timeout == 60.0
    assert isinstance(cfg.virtual_servers[0].persistence_timeout, float)
    assert cfg.timeouts["close"] == 3.0 and cfg.timeouts["udp"] == 1.5


@pytest.mark.parametrize("section,index,key,path", [
    ("interface", 0, "name", "interface[0].name"),
    ("interface", 1, "addresses", "interface[1].addresses"),
    ("virtual_server", 0, "address", "virtual_server[0].address"),
    ("virtual_server", 0, "port", "virtual_server[0].port"),
    ("virtual_server", 0, "protocol", "virtual_server[0].protocol"),
])
def test_missing_required(section, index, key, path):
    data = base_dict()
    del data[section][index][key]
    err = dict_error(data)
    assert err.path == path and "missing required key" in err.message


def test_missing_required_real_server_address():
    data = base_dict()
    del data["virtual_server"][0]["real_server"][0]["address"]
    err = dict_error(data)
    assert err.path == "virtual_server[0].real_server[0].address"
    assert "missing required key 'address'" in err.message


# --------------------------------------------------------------------------- bad values

def _set(path_keys, value):
    """mutator setting data[...][...] = value."""
    def mutate(d):
        obj = d
        for k in path_keys[:-1]:
            obj = obj[k]
        obj[path_keys[-1]] = value
    return mutate


VS0 = ["virtual_server", 0]
RS0 = ["virtual_server", 0, "real_server", 0]


@pytest.mark.parametrize("keys,value,path,fragment", [
    (["interface", 0, "mac"], "02:00:00:00:01", "interface[0].mac", "invalid MAC"),
    (["interface", 0, "mac"], "02-00-00-00-01-01", "interface[0].mac", "invalid MAC"),
    (["interface", 0, "mac"], "02:00:00:00:01:0g", "interface[0].mac", "invalid MAC"),
    (["interface", 0, "mac"], "ff:ff:ff:ff:ff:ff", "interface[0].mac", "unicast"),
    (["interface", 0, "addresses"], ["198.18.0.1"], "interface[0].addresses[0]", "prefix length"),
    (["interface", 0, "addresses"], ["198.18.0.1/33"], "interface[0].addresses[0]", "invalid interface address"),
    (["interface", 0, "addresses"], ["198.18.0.300/24"], "interface[0].addresses[0]", "invalid"),
    (["interface", 0, "addresses"], ["198.18.0.0/24"], "interface[0].addresses[0]", "network or broadcast"),
    (["interface", 0, "addresses"], ["198.18.0.1/24", "198.18.0.1/16"], "interface[0].addresses[1]", "duplicate"),
    (["interface", 0, "addresses"], [], "interface[0].addresses", "at least one"),
    (["interface", 1, "addresses"], ["198.18.0.1/16"], "interface[1].addresses[0]", "already an address of"),
    (["interface", 0, "name"], "", "interface[0].name", "invalid interface name"),
    (["interface", 0, "name"], "a-very-long-ifname", "interface[0].name", "invalid interface name"),
    (["interface", 0, "mtu"], 67, "interface[0].mtu", "out of range 68..65535"),
    (["interface", 0, "mtu"], 65536, "interface[0].mtu", "out of range"),
    (["interface", 0, "driver"], "pcap", "interface[0].driver", "expected one of: afpacket, tap"),
    (VS0 + ["address"], "198.18.0.256", "virtual_server[0].address", "invalid IP address"),
    (VS0 + ["address"], "198.18.0.0/24", "virtual_server[0].address", "invalid IP address"),
    (VS0 + ["port"], 0, "virtual_server[0].port", "out of range 1..65535"),
    (VS0 + ["port"], 65536, "virtual_server[0].port", "out of range"),
    (VS0 + ["protocol"], "sctp", "virtual_server[0].protocol", "expected one of: tcp, udp"),
    (VS0 + ["protocol"], "TCP", "virtual_server[0].protocol", "invalid protocol"),
    (VS0 + ["scheduler"], "fifo", "virtual_server[0].scheduler", "invalid scheduler"),
    (VS0 + ["mode"], "masq", "virtual_server[0].mode", "invalid mode"),
    (VS0 + ["persistence_timeout"], -1, "virtual_server[0].persistence_timeout", ">= 0"),
    (VS0 + ["persistence_timeout"], float("inf"), "virtual_server[0].persistence_timeout", "finite"),
    (VS0 + ["persistence_netmask"], 33, "virtual_server[0].persistence_netmask", "out of range 0..32"),
    (VS0 + ["persistence_netmask"], -1, "virtual_server[0].persistence_netmask", "out of range"),
    (VS0 + ["toa_kind"], 256, "virtual_server[0].toa_kind", "out of range 0..255"),
    (VS0 + ["local_port_range"], [2000, 1999], "virtual_server[0].local_port_range", "low <= high"),
    (VS0 + ["local_port_range"], [0, 100], "virtual_server[0].local_port_range", "1 <= low"),
    (VS0 + ["local_port_range"], [100, 65536], "virtual_server[0].local_port_range", "<= 65535"),
    (VS0 + ["local_addresses"], ["198.19.0.250", "nope"], "virtual_server[0].local_addresses[1]", "invalid IP"),
    (VS0 + ["local_addresses"], ["198.19.0.250", "198.19.0.250"], "virtual_server[0].local_addresses[1]",
     "duplicate local address"),
    (RS0 + ["address"], "198.19.0", "virtual_server[0].real_server[0].address", "invalid IP address"),
    (RS0 + ["port"], 0, "virtual_server[0].real_server[0].port", "out of range 1..65535"),
    (RS0 + ["weight"], -1, "virtual_server[0].real_server[0].weight", "out of range 0..65535"),
    (RS0 + ["weight"], 65536, "virtual_server[0].real_server[0].weight", "out of range"),
    (RS0 + ["mode"], "direct", "virtual_server[0].real_server[0].mode", "invalid mode"),
    (["mode"], "NAT", "mode", "invalid mode"),
    (["table"], {"max_connections": 0}, "table.max_connections", "must be >= 1"),
    (["table"], {"neighbor_queue": -1}, "table.neighbor_queue", "must be >= 0"),
    (["table"], {"icmp_echo": "ignore"}, "table.icmp_echo", "expected one of: reply, drop"),
    (["timeouts"], {"established": 0}, "timeouts.established", "must be > 0"),
    (["timeouts"], {"udp": -5.0}, "timeouts.udp", "must be > 0"),
    (["timeouts"], {"ESTABLISHED": 5}, "timeouts.ESTABLISHED", "unknown key"),
])
def test_bad_values(keys, value, path, fragment):
    data = base_dict()
    _set(keys, value)(data)
    err = dict_error(data)
    assert err.path == path, err
    assert fragment in err.message, err


# --------------------------------------------------------------------------- services

def test_duplicate_service(tmp_path):
    err = load_error(tmp_path, IFACES + VS + RS + """
        [[virtual_server]]
        address = "198.18.0.100"
        port = 80
        protocol = "udp"

        [[virtual_server]]
        address = "198.18.0.100"
        port = 80
        protocol = "tcp"
    """)
    assert err.path == "virtual_server[2]"
    assert "duplicate service" in err.message and "virtual_server[0]" in err.message


def test_duplicate_real_server(tmp_path):
    err = load_error(tmp_path, IFACES + VS + RS + '  [[virtual_server.real_server]]\n  address = "198.19.0.12"\n'
                     + RS.replace('address', 'port = 80\n  address'))
    assert err.path == "virtual_server[0].real_server[2]"
    assert "duplicate real server 198.19.0.11:80" in err.message and "real_server[0]" in err.message


def test_same_real_server_different_ports_is_fine(tmp_path):
    cfg = load_config(write(tmp_path, IFACES + VS + RS + RS + "  port = 81\n"))
    assert [r.port for r in cfg.virtual_servers[0].real_servers] == [80, 81]


def test_real_server_wrong_family(tmp_path):
    err = load_error(tmp_path, IFACES + VS + '  [[virtual_server.real_server]]\n  address = "2001:db8::11"\n')
    assert err.path == "virtual_server[0].real_server[0].address"
    assert "IPv6" in err.message and "IPv4" in err.message


def test_local_address_wrong_family(tmp_path):
    err = load_error(tmp_path, IFACES + VS + 'mode = "fullnat"\nlocal_addresses = ["198.19.0.250", "2001:db8::250"]\n')
    assert err.path == "virtual_server[0].local_addresses[1]" and "IPv6" in err.message


def test_ipv6_service_not_supported(tmp_path):
    err = load_error(tmp_path, IFACES + VS.replace("198.18.0.100", "2001:db8::100"))
    assert err.path == "virtual_server[0].address"
    assert "IPv6 services are not supported yet" in err.message


@pytest.mark.parametrize("key", ["sh_port", "sh_fallback"])
def test_sh_flags_need_sh_scheduler(tmp_path, key):
    err = load_error(tmp_path, IFACES + VS + f'scheduler = "wrr"\n{key} = true\n')
    assert err.path == f"virtual_server[0].{key}" and "'sh' and 'mh' schedulers" in err.message
    # explicitly false is harmless, and mh takes the same flags (ipvsadm mh-port/mh-fallback)
    load_config(write(tmp_path, IFACES + VS + f'scheduler = "wrr"\n{key} = false\n', "ok.toml"))
    load_config(write(tmp_path, IFACES + VS + f'scheduler = "mh"\n{key} = true\n', "mh.toml"))


def test_empty_pool_allowed(tmp_path):
    cfg = load_config(write(tmp_path, IFACES + VS))
    assert cfg.virtual_servers[0].real_servers == ()


def test_real_server_port_defaults_to_service_port(tmp_path):
    cfg = load_config(write(tmp_path, IFACES + VS.replace("80", "8443") + RS))
    assert cfg.virtual_servers[0].real_servers[0].port == 8443


# --------------------------------------------------------------------------- modes

@pytest.mark.parametrize("mode", ["dr", "tun"])
def test_dr_tun_cannot_map_ports(tmp_path, mode):
    err = load_error(tmp_path, f'mode = "{mode}"\n' + IFACES + VS + RS + RS.replace("11", "12") + "  port = 8080\n")
    assert err.path == "virtual_server[0].real_server[1].port"
    assert "DR/TUN cannot map ports" in err.message and "8080" in err.message


def test_dr_port_check_uses_real_server_mode(tmp_path):
    # NAT service, one RS in DR with port mapping: error on that RS only
    err = load_error(tmp_path, IFACES + VS + RS + "  port = 8080\n"
                     + RS.replace("11", "12") + '  port = 8080\n  mode = "dr"\n')
    assert err.path == "virtual_server[0].real_server[1].port" and "'dr'" in err.message
    # DR service, one RS in NAT may map ports
    cfg = load_config(write(tmp_path, 'mode = "dr"\n' + IFACES + VS + RS + '  port = 8080\n  mode = "nat"\n'
                            + RS.replace("11", "12"), "ok.toml"))
    assert [(r.mode, r.port) for r in cfg.virtual_servers[0].real_servers] == [("nat", 8080), ("dr", 80)]


def test_fullnat_requires_local_addresses(tmp_path):
    err = load_error(tmp_path, IFACES + VS + 'mode = "fullnat"\n' + RS)
    assert err.path == "virtual_server[0].local_addresses" and "FULLNAT" in err.message
    err = load_error(tmp_path, IFACES + VS + 'mode = "fullnat"\nlocal_addresses = []\n' + RS)
    assert err.path == "virtual_server[0].local_addresses"


def test_real_server_cannot_be_fullnat(tmp_path):
    err = load_error(tmp_path, IFACES + VS + RS + '  mode = "fullnat"\n')
    assert err.path == "virtual_server[0].real_server[0].mode"
    assert "service-level" in err.message


def test_real_server_mode_on_fullnat_service(tmp_path):
    head = IFACES + VS + 'mode = "fullnat"\nlocal_addresses = ["198.19.0.250"]\n'
    err = load_error(tmp_path, head + RS + '  mode = "dr"\n')
    assert err.path == "virtual_server[0].real_server[0].mode"
    assert "conflicts with the service's mode 'fullnat'" in err.message
    # repeating "fullnat" on a FULLNAT service is redundant but consistent
    cfg = load_config(write(tmp_path, head + RS + '  mode = "fullnat"\n', "ok.toml"))
    assert cfg.virtual_servers[0].real_servers[0].mode == "fullnat"


def test_mode_resolution_precedence(tmp_path):
    text = 'mode = "tun"\n' + IFACES + VS + RS + RS.replace("11", "12") + '  mode = "nat"\n' + """
        [[virtual_server]]
        address = "198.18.0.100"
        port = 53
        protocol = "udp"
        mode = "dr"
    """ + RS + RS.replace("11", "12") + '  mode = "tun"\n'
    p = write(tmp_path, text)
    cfg = load_config(p)
    assert cfg.mode == "tun"
    a, b = cfg.virtual_servers
    assert a.mode == "tun" and [r.mode for r in a.real_servers] == ["tun", "nat"]
    assert b.mode == "dr" and [r.mode for r in b.real_servers] == ["dr", "tun"]
    cfg = load_config(p, mode_override="nat")
    assert cfg.mode == "nat"
    a, b = cfg.virtual_servers
    assert a.mode == "nat" and [r.mode for r in a.real_servers] == ["nat", "nat"]
    assert b.mode == "dr" and [r.mode for r in b.real_servers] == ["dr", "tun"]


def test_default_mode_is_nat():
    cfg = parse_config(base_dict())
    assert cfg.mode == "nat" and cfg.virtual_servers[0].mode == "nat"


def test_override_dr_example_to_fullnat_needs_lips():
    with pytest.raises(ConfigError) as ei:
        load_config(EXAMPLES / "dr.toml", mode_override="fullnat")
    assert ei.value.path == "virtual_server[0].local_addresses"
    assert ei.value.file == str(EXAMPLES / "dr.toml")


def test_override_nat_example_to_dr_fails_on_port_mapping():
    with pytest.raises(ConfigError) as ei:
        load_config(EXAMPLES / "nat.toml", mode_override="dr")
    assert ei.value.path == "virtual_server[0].real_server[0].port"
    assert "DR/TUN cannot map ports" in ei.value.message


@pytest.mark.parametrize("example,override", [
    ("dr.toml", "tun"), ("tun.toml", "dr"), ("dr.toml", "nat"), ("fullnat.toml", "nat"),
])
def test_override_compatible_examples(example, override):
    cfg = load_config(EXAMPLES / example, mode_override=override)
    assert cfg.mode == override
    assert all(vs.mode == override for vs in cfg.virtual_servers)
    assert all(rs.mode == override for vs in cfg.virtual_servers for rs in vs.real_servers)


def test_nat_example_to_fullnat_without_lips_fails():
    # nat.toml's port mapping is fine for FULLNAT; the missing LIP pool is not
    with pytest.raises(ConfigError) as ei:
        load_config(EXAMPLES / "nat.toml", mode_override="fullnat")
    assert ei.value.path == "virtual_server[0].local_addresses"


def test_invalid_override():
    err = dict_error(base_dict(), mode_override="masq")
    assert err.path == "" and "mode override 'masq'" in err.message


def test_override_does_not_hide_bad_file_mode():
    data = base_dict()
    data["mode"] = "bogus"
    err = dict_error(data, mode_override="nat")
    assert err.path == "mode"


def test_parse_config_does_not_mutate_input():
    data = base_dict()
    before = copy.deepcopy(data)
    parse_config(data, mode_override="tun")
    assert data == before
