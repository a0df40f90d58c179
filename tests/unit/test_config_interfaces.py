"""Tests for pylvs.config, the network side: interfaces (MACs, addresses, the TAP ``host_address``),
routes and neighbours, with the exact key paths in the errors.  The examples, services and modes:
tests/unit/test_config.py."""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Interface

import pytest
from config_helpers import EXAMPLES, IFACES, base_dict, dict_error, load_error

from pylvs.config import Interface, load_config, parse_config

# --------------------------------------------------------------------------- required keys, bad values

@pytest.mark.parametrize("section,entry,missing", [
    ("route", {"prefix": "10.0.0.0/8", "interface": "eth1"}, "prefix"),
    ("route", {"prefix": "10.0.0.0/8", "interface": "eth1"}, "interface"),
    ("neighbor", {"address": "198.19.0.9", "mac": "02:00:00:00:00:09", "interface": "eth1"}, "address"),
    ("neighbor", {"address": "198.19.0.9", "mac": "02:00:00:00:00:09", "interface": "eth1"}, "mac"),
    ("neighbor", {"address": "198.19.0.9", "mac": "02:00:00:00:00:09", "interface": "eth1"}, "interface"),
])
def test_missing_required_route_neighbor(section, entry, missing):
    data = base_dict()
    entry = dict(entry)
    del entry[missing]
    data[section] = [entry]
    err = dict_error(data)
    assert err.path == f"{section}[0].{missing}" and "missing required key" in err.message


def test_at_least_one_interface(tmp_path):
    err = load_error(tmp_path, 'mode = "nat"\n')
    assert err.path == "interface" and "at least one" in err.message


def test_mac_case_insensitive():
    data = base_dict()
    data["interface"][0]["mac"] = "0A:Bb:cC:dd:EE:ff"
    del data["interface"][1]["mac"]
    cfg = parse_config(data)
    assert cfg.interfaces[0].mac == bytes.fromhex("0abbccddeeff")
    assert cfg.interfaces[1].mac is None


def test_bad_neighbor_mac(tmp_path):
    err = load_error(tmp_path, IFACES + """
        [[neighbor]]
        address = "198.19.0.11"
        mac = "02:00:00:00:02"
        interface = "eth1"
    """)
    assert err.path == "neighbor[0].mac" and "invalid MAC" in err.message


@pytest.mark.parametrize("prefix,fragment", [
    ("10.0.0.0", "prefix length"),
    ("10.0.0.1/8", "host bits set"),
    ("10.0.0.0/40", "invalid prefix"),
])
def test_bad_route_prefix(tmp_path, prefix, fragment):
    err = load_error(tmp_path, IFACES + f'[[route]]\nprefix = "{prefix}"\ninterface = "eth1"\n')
    assert err.path == "route[0].prefix" and fragment in err.message


# --------------------------------------------------------------------------- interfaces, routes, neighbours

def test_duplicate_interface_name(tmp_path):
    err = load_error(tmp_path, IFACES + '[[interface]]\nname = "eth1"\naddresses = ["10.0.0.1/8"]\n')
    assert err.path == "interface[2].name"
    assert "duplicate interface name 'eth1'" in err.message and "interface[1]" in err.message


def test_route_unknown_interface(tmp_path):
    err = load_error(tmp_path, IFACES + '[[route]]\nprefix = "10.0.0.0/8"\ninterface = "eth9"\n')
    assert err.path == "route[0].interface"
    assert "unknown interface 'eth9'" in err.message and "eth0, eth1" in err.message


def test_neighbor_unknown_interface(tmp_path):
    err = load_error(tmp_path, IFACES + """
        [[neighbor]]
        address = "198.19.0.11"
        mac = "02:00:00:00:02:11"
        interface = "eth2"
    """)
    assert err.path == "neighbor[0].interface" and "unknown interface" in err.message


def test_route_via_outside_connected_subnet(tmp_path):
    err = load_error(tmp_path, IFACES + """
        [[route]]
        prefix = "10.0.0.0/8"
        via = "198.18.0.254"
        interface = "eth1"
    """)
    assert err.path == "route[0].via"
    assert "not inside a connected subnet" in err.message and "198.19.0.0/24" in err.message


def test_route_via_is_own_address(tmp_path):
    err = load_error(tmp_path, IFACES + '[[route]]\nprefix = "10.0.0.0/8"\nvia = "198.19.0.1"\ninterface = "eth1"\n')
    assert err.path == "route[0].via" and "itself" in err.message


def test_route_family_mismatch(tmp_path):
    err = load_error(tmp_path, IFACES + '[[route]]\nprefix = "10.0.0.0/8"\nvia = "2001:db8::1"\ninterface = "eth1"\n')
    assert err.path == "route[0].via" and "IPv6" in err.message and "IPv4" in err.message
    err = load_error(tmp_path, IFACES + '[[route]]\nprefix = "2001:db8::/32"\ninterface = "eth1"\n')
    assert err.path == "route[0].prefix" and "has no IPv6 address" in err.message


def test_duplicate_route(tmp_path):
    err = load_error(tmp_path, IFACES + '[[route]]\nprefix = "10.0.0.0/8"\ninterface = "eth1"\n'
                     '[[route]]\nprefix = "10.0.0.0/8"\ninterface = "eth0"\n')
    assert err.path == "route[1].prefix" and "route[0]" in err.message


def test_neighbor_family_mismatch(tmp_path):
    err = load_error(tmp_path, IFACES + """
        [[neighbor]]
        address = "2001:db8::11"
        mac = "02:00:00:00:02:11"
        interface = "eth1"
    """)
    assert err.path == "neighbor[0].address" and "has no IPv6 address" in err.message


def test_duplicate_neighbor(tmp_path):
    n = '[[neighbor]]\naddress = "198.19.0.11"\nmac = "02:00:00:00:02:11"\ninterface = "eth1"\n'
    err = load_error(tmp_path, IFACES + n + n)
    assert err.path == "neighbor[1].address" and "neighbor[0]" in err.message


# --------------------------------------------------------------------------- TAP host side

TAP_IFACE = """
[[interface]]
name = "pylvs0"
driver = "tap"
mac = "02:00:00:00:01:fe"
addresses = ["198.18.255.2/30"]
"""


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
def test_tap_examples_load(mode):
    cfg = load_config(EXAMPLES / f"tap-{mode}.toml")
    assert cfg.mode == mode
    assert cfg.interfaces == (
        Interface("pylvs0", bytes.fromhex("0200000001fe"), (IPv4Interface("198.18.255.2/30"),),
                  driver="tap", host_address=IPv4Interface("198.18.255.1/30")),
    )
    assert [(str(r.prefix), str(r.via), r.interface) for r in cfg.routes] == [
        ("0.0.0.0/0", "198.18.255.1", "pylvs0")]
    assert cfg.neighbors == ()  # the kernel side's MAC is only known once the TAP exists
    # the same services as the plain examples
    assert cfg.virtual_servers == load_config(EXAMPLES / f"{mode}.toml").virtual_servers


def test_host_address_defaults_to_none():
    cfg = parse_config(tomllib.loads(TAP_IFACE))
    assert cfg.interfaces[0].host_address is None
    assert parse_config(base_dict()).interfaces[0].host_address is None


@pytest.mark.parametrize("own,host", [
    ("198.18.255.2/30", "198.18.255.1/30"),
    ("198.18.255.2/31", "198.18.255.3/31"),  # RFC 3021 point-to-point: both ends usable
    ("198.18.255.2/24", "198.18.255.200/24"),
])
def test_host_address_ok(own, host):
    data = tomllib.loads(TAP_IFACE)
    data["interface"][0]["addresses"] = ["10.9.0.1/24", own]  # any of the addresses may hold it
    data["interface"][0]["host_address"] = host
    cfg = parse_config(data)
    assert cfg.interfaces[0].host_address == IPv4Interface(host)


@pytest.mark.parametrize("value,fragment", [
    ("198.18.255.1", "needs a prefix length, e.g. '198.18.255.1/30'"),
    ("198.18.255.999/30", "invalid interface address '198.18.255.999/30'"),
    ("2001:db8::1/64", "IPv6"),
    ("198.18.255.2/30", "pylvs's own address on this interface"),
    ("198.18.255.0/30", "network or broadcast address of 198.18.255.0/30"),
    ("198.18.255.3/30", "network or broadcast address"),
    ("198.18.254.1/30", "not in the subnet of any of the interface's addresses (IPv4 subnets: "
                        "198.18.255.0/30)"),
    ("198.18.255.1/24", "not in the subnet"),  # same range, different prefix: not the same subnet
])
def test_host_address_bad_values(value, fragment):
    data = tomllib.loads(TAP_IFACE)
    data["interface"][0]["host_address"] = value
    err = dict_error(data)
    assert err.path == "interface[0].host_address", err
    assert fragment in err.message, err
    assert str(err) == f"t.toml: interface[0].host_address: {err.message}"


def test_host_address_wrong_type():
    data = tomllib.loads(TAP_IFACE)
    data["interface"][0]["host_address"] = ["198.18.255.1/30"]
    err = dict_error(data)
    assert err.path == "interface[0].host_address" and "expected a string, got array" in err.message


@pytest.mark.parametrize("driver", [None, "afpacket"])
def test_host_address_only_for_tap(tmp_path, driver):
    data = base_dict()
    data["interface"][1]["host_address"] = "198.19.0.254/24"
    if driver:
        data["interface"][1]["driver"] = driver
    err = dict_error(data)
    assert err.path == "interface[1].host_address"
    assert 'only applies to driver = "tap"' in err.message and "'afpacket'" in err.message


def test_host_address_error_in_file(tmp_path):
    err = load_error(tmp_path, TAP_IFACE + 'host_address = "10.0.0.1/30"\n')
    assert err.path == "interface[0].host_address" and "not in the subnet" in err.message


def test_host_address_in_unknown_key_list(tmp_path):
    err = load_error(tmp_path, TAP_IFACE + 'host_adress = "198.18.255.1/30"\n')
    assert err.path == "interface[0].host_adress"
    assert "did you mean 'host_address'" in err.message
    assert "name, mac, addresses, mtu, driver, host_address" in err.message
