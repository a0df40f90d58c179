"""The IPVS TCP state machine as tables (net/netfilter/ipvs/ip_vs_proto_tcp.c).

Three tables: INPUT (client → server packets of a connection the director sees
both ways: NAT, FULLNAT), OUTPUT (server → client), and INPUT_ONLY (DR, TUN:
the director sees only the client's half; IPVS flags those connections
``IP_VS_CONN_F_NOOUTPUT`` and switches to the full tables once an output packet
is seen).  Rows are indexed by the packet's flag class, columns by the current
state.
"""

from __future__ import annotations

from pylvs.core.packet import TH_ACK, TH_FIN, TH_RST, TH_SYN

STATES = (
    "NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK",
)
(sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA) = range(len(STATES))

DIR_INPUT = 0
DIR_OUTPUT = 1
DIR_INPUT_ONLY = 2

FLAG_CLASSES = ("syn", "fin", "ack", "rst")

# Row = flag class (syn, fin, ack, rst); column = current state in STATES order.
TABLES: dict[int, tuple[tuple[int, ...], ...]] = {
    DIR_INPUT: (
        #  sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA
        (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
        (sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
        (sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
        (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR),  # rst
    ),
    DIR_OUTPUT: (
        (sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR),  # syn
        (sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW),  # fin
        (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES),  # ack
        (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),  # rst
    ),
    DIR_INPUT_ONLY: (
        (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
        (sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
        (sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
        (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL),  # rst
    ),
}


def flag_class(flags: int) -> int:
    """IPVS ``tcp_state_idx``: RST wins, then SYN, FIN, ACK; -1 for none of them."""
    if flags & TH_RST:
        return 3
    if flags & TH_SYN:
        return 0
    if flags & TH_FIN:
        return 1
    if flags & TH_ACK:
        return 2
    return -1


def next_state(direction: int, state: int, flags: int) -> int:
    """The state after a packet with ``flags`` in ``direction``.

    A segment with none of SYN/FIN/ACK/RST moves the entry to CLOSE, as IPVS's
    ``set_tcp_state`` does (its ``new_state`` starts as CLOSE).
    """
    idx = flag_class(flags)
    if idx < 0:
        return sCL
    return TABLES[direction][idx][state]


_ALL_CLOSE = (sCL,) * len(STATES)

#: ``ROWS[direction][flags & 0xFF][state]`` is ``next_state(direction, state, flags)`` (the classes look at
#: the low byte only), as three subscripts: the Director's per-packet form, with no call per packet.
ROWS: tuple[tuple[tuple[int, ...], ...], ...] = tuple(
    tuple(_ALL_CLOSE if flag_class(f) < 0 else TABLES[d][flag_class(f)] for f in range(256))
    for d in (DIR_INPUT, DIR_OUTPUT, DIR_INPUT_ONLY)
)
