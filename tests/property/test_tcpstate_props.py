"""pylvs.core.tcpstate: every (state, flags) pair of every table goes to a defined
state, the tables are IPVS's, and an RST never creates a connection in the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylvs.config import load_config
from pylvs.core.pipeline import Director, Drop, Send
from pylvs.core.tcpstate import (
    DIR_INPUT, DIR_INPUT_ONLY, DIR_OUTPUT, FLAG_CLASSES, STATES, TABLES, flag_class, next_state,
)
from pylvs.testing import tcp_frame

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODES = ("nat", "dr", "tun", "fullnat")
DIRECTIONS = (DIR_INPUT, DIR_OUTPUT, DIR_INPUT_ONLY)

# IPVS's tcp_states[] (net/netfilter/ipvs/ip_vs_proto_tcp.c), written out by
# state name so that a transposed row or column shows up.
_IPVS = {
    DIR_INPUT: {
        "syn": "SR ES ES SR SR SR SR SR SR SR SR",
        "fin": "CL CW SS TW TW TW CL CW LA LI TW",
        "ack": "CL ES SS ES FW TW CL CW CL LI ES",
        "rst": "CL CL CL SR CL CL CL CL LA LI SR",
    },
    DIR_OUTPUT: {
        "syn": "SS ES SS SR SS SS SS SS SS LI SR",
        "fin": "TW FW SS TW FW TW CL TW LA LI TW",
        "ack": "ES ES SS ES FW TW CL CW LA ES ES",
        "rst": "CL CL SS CL CL TW CL CL CL CL CL",
    },
    DIR_INPUT_ONLY: {
        "syn": "SR ES ES SR SR SR SR SR SR SR SR",
        "fin": "CL FW SS TW FW TW CL CW LA LI TW",
        "ack": "CL ES SS ES FW TW CL CW CL LI ES",
        "rst": "CL CL CL SR CL CL CL CL LA LI CL",
    },
}
_ABBR = {"NO": "NONE", "ES": "ESTABLISHED", "SS": "SYN_SENT", "SR": "SYN_RECV", "FW": "FIN_WAIT",
         "TW": "TIME_WAIT", "CL": "CLOSE", "CW": "CLOSE_WAIT", "LA": "LAST_ACK", "LI": "LISTEN",
         "SA": "SYNACK"}
COLUMNS = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
           "LAST_ACK", "LISTEN", "SYNACK")

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def ref_class(flags: int) -> str | None:
    """IPVS tcp_state_idx: RST first, then SYN, FIN, ACK."""
    if flags & RST:
        return "rst"
    if flags & SYN:
        return "syn"
    if flags & FIN:
        return "fin"
    if flags & ACK:
        return "ack"
    return None


def ref_next(direction: int, state_name: str, flags: int) -> str:
    cls = ref_class(flags)
    if cls is None:
        return "CLOSE"  # set_tcp_state starts from IP_VS_TCP_S_CLOSE
    row = _IPVS[direction][cls].split()
    return _ABBR[row[COLUMNS.index(state_name)]]


def test_state_names():
    assert STATES == COLUMNS
    assert FLAG_CLASSES == ("syn", "fin", "ack", "rst")


def test_tables_shape_and_range():
    assert set(TABLES) == set(DIRECTIONS)
    for d in DIRECTIONS:
        assert len(TABLES[d]) == len(FLAG_CLASSES)
        for row in TABLES[d]:
            assert len(row) == len(STATES)
            assert all(isinstance(s, int) and 0 <= s < len(STATES) for s in row)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_state_and_flag_byte_goes_to_a_defined_state(direction):
    """Exhaustive: 11 states x 256 flag bytes, in each of the three directions."""
    for state in range(len(STATES)):
        for flags in range(256):
            new = next_state(direction, state, flags)
            assert isinstance(new, int) and 0 <= new < len(STATES), (direction, STATES[state], flags)
            assert STATES[new] == ref_next(direction, STATES[state], flags), (direction, STATES[state], hex(flags))


def test_flag_class_exhaustive():
    for flags in range(256):
        cls = flag_class(flags)
        want = ref_class(flags)
        assert cls == (-1 if want is None else FLAG_CLASSES.index(want))


def test_flag_bits_outside_syn_fin_ack_rst_do_not_matter():
    for d in DIRECTIONS:
        for state in range(len(STATES)):
            for flags in range(256):
                core = flags & (SYN | FIN | ACK | RST)
                assert next_state(d, state, flags) == next_state(d, state, core)


# ---------------------------------------------------------------- RST never creates a connection

DIRECTORS = {m: load_config(EXAMPLES / f"{m}.toml") for m in MODES}

CLIENT_MAC = "02:00:00:00:00:10"
ETH0_MAC = "02:00:00:00:01:01"
client_hosts = st.integers(2, 254).filter(lambda h: h not in (1, 100))
rst_flags = st.integers(0, 255).map(lambda f: f | RST)


@settings(max_examples=150, deadline=None)
@given(mode=st.sampled_from(MODES), pkts=st.lists(
    st.tuples(client_hosts, st.integers(1, 65535), st.sampled_from([80, 53, 8080, 443]), rst_flags,
              st.binary(max_size=20), st.floats(0, 1e6, allow_nan=False)),
    min_size=1, max_size=8))
def test_rst_never_creates_a_connection(mode, pkts):
    d = Director(DIRECTORS[mode])
    for host, sport, dport, flags, payload, now in pkts:
        f = tcp_frame(CLIENT_MAC, ETH0_MAC, f"198.18.0.{host}", "198.18.0.100", sport, dport, flags,
                      payload=payload)
        actions = d.handle(f, "eth0", now)
        assert not any(isinstance(a, Send) and a.kind == "forward" for a in actions)
        assert all(isinstance(a, Drop) for a in actions)
        assert len(d.table) == 0
    assert d.events["conns_created"] == 0
    assert all(s.conns == 0 for s in d.services)
