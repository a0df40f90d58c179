"""How `pylvs run` wires a config to the AF_PACKET filters (no privileges needed)."""

from __future__ import annotations

import pathlib

from pylvs.config import load_config, parse_config
from pylvs.core.pipeline import Director
from pylvs.io.live import bpf_addresses, nat_real_servers
from pylvs.testing import ip4

EX = pathlib.Path(__file__).resolve().parents[2] / "examples"


def test_filter_passes_our_addresses_and_nat_servers():
    cfg = load_config(EX / "nat.toml")
    dst, src = bpf_addresses(Director(cfg), cfg)
    assert dst == {ip4("198.18.0.1"), ip4("198.19.0.1"), ip4("198.18.0.100")}
    assert src == {ip4("198.19.0.11"), ip4("198.19.0.12"), ip4("198.19.0.13")}


def test_fullnat_and_dr_need_no_source_matches():
    for mode in ("fullnat", "dr", "tun"):
        cfg = load_config(EX / f"{mode}.toml")
        dst, src = bpf_addresses(Director(cfg), cfg)
        assert src == set() and nat_real_servers(cfg) == set()
        if mode == "fullnat":
            assert ip4("198.19.0.250") in dst


def test_ipv6_interface_addresses_stay_out_of_the_ipv4_filter():
    import tomllib

    data = tomllib.loads((EX / "nat.toml").read_text())
    data["interface"][0]["addresses"].append("2001:db8::1/64")
    cfg = parse_config(data, "nat6.toml")
    dst, _ = bpf_addresses(Director(cfg), cfg)
    assert all(len(a) == 4 for a in dst) and ip4("198.18.0.1") in dst


def test_gc_freeze_bounds_full_collections(monkeypatch):
    """Runner.gc_step freezes the collector's generations once FREEZE_EVERY connections were created since
    the last freeze, and not before: a full collection never walks more than that many flows' objects."""
    import gc

    from pylvs.io import loop

    d = Director(load_config(pathlib.Path(__file__).resolve().parents[2] / "examples" / "nat.toml"))
    r = loop.Runner(d, {})
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(d.events["conns_created"]))
    d.events["conns_created"] = loop.FREEZE_EVERY - 1
    assert r.gc_step() is False and frozen == []
    d.events["conns_created"] = loop.FREEZE_EVERY
    assert r.gc_step() is True and frozen == [loop.FREEZE_EVERY]
    d.events["conns_created"] = 2 * loop.FREEZE_EVERY - 1
    assert r.gc_step() is False
    d.events["conns_created"] = 2 * loop.FREEZE_EVERY + 5
    assert r.gc_step() is True and frozen == [loop.FREEZE_EVERY, 2 * loop.FREEZE_EVERY + 5]
