"""The fast path's TCP state changes (``set_tcp_states``): C and the pure twin agree byte for byte, entry for
entry and event for event, and every change is IPVS's table (pylvs.core.tcpstate) applied to the segment.

Flows in NAT and FULLNAT with TOA (both halves seen: INPUT/OUTPUT tables) and DR (client half only: INPUT_ONLY, switching to the
full tables if an output packet ever shows up) start in random states; segments with random flags go through
one at a time.  A client's SYN, a server's SYN without ACK, or a segment with neither ACK nor RST must be
punted untouched; anything else of a fast flow (the server's SYN-ACK included: the handshake is handed over at
the SYN) is forwarded with its entry's state, deadline (that state's timeout) and an event when the state moved.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylvs import native

if not native.available():
    pytest.skip(f"pylvs._native is not built or not importable ({native._IMPORT_ERROR}): "
                "nothing to compare the pure twins with", allow_module_level=True)

from native_diff_helpers import ADDRS, DESC, DR, FULLNAT, IN, MACS, NAT, OUT, REASONS, build_frame  # noqa: E402

from pylvs import _native as C  # noqa: E402
from pylvs._pure import flowtable as PF  # noqa: E402
from pylvs.core.fastpath import TCP_NEXT  # noqa: E402
from pylvs.core.tcpstate import STATES, TABLES, flag_class  # noqa: E402
from pylvs.testing import ip4  # noqa: E402

pytestmark = pytest.mark.once  # both implementations are used explicitly
TIMEOUTS = [float(10 + 7 * i) for i in range(len(STATES))]


def _table(T, modes):
    t = T(16, bytes(16), 4)
    t.set_interface(0, MACS[1], ip4("198.18.0.1"), 1500)
    t.set_interface(1, MACS[2], ip4("198.19.0.1"), 1500)
    t.set_tcp_states(TCP_NEXT, TIMEOUTS)
    for i, (mode, state) in enumerate(modes):
        s = t.insert(6, ADDRS[0], 40000 + i, ADDRS[2], 80, ADDRS[0], 40000 + i, ADDRS[3], 80 if mode == DR else 8080,
                     mode, mode != DR, 1e9)
        # FULLNAT (the same tuple shape here: its local address is the client's) with TOA kind 254
        t.set_fast(s, 0, MACS[0], 1, MACS[3], 1, 254 if mode == FULLNAT else 0, state, 2 if mode == DR else 0)
    return t


@settings(max_examples=300, deadline=None)
@given(modes=st.lists(st.tuples(st.sampled_from([NAT, DR, FULLNAT]), st.integers(0, len(STATES) - 1)), min_size=1, max_size=4),
       segs=st.lists(st.tuples(st.integers(0, 3), st.sampled_from([IN, OUT]), st.integers(0, 255)), max_size=30))
def test_tcp_state_changes_c_equals_pure_equals_ipvs(modes, segs):
    tc, tp = _table(C.FlowTable, modes), _table(PF.FlowTable, modes)
    now = 5.0
    for k, (i, direction, flags) in enumerate(segs):
        i %= len(modes)
        mode, _ = modes[i]
        if direction == IN:
            f = build_frame(MACS[1], MACS[0], 6, ADDRS[0], 40000 + i, ADDRS[2], 80, flags=flags)
        else:  # the server's reply (for DR, no outbound key exists: a miss, punted as no_flow)
            f = build_frame(MACS[2], MACS[3], 6, ADDRS[3], 80 if mode == DR else 8080, ADDRS[0], 40000 + i,
                            flags=flags)
        before = tc.get(i)
        out = []
        for t in (tc, tp):
            buf = bytearray(bytes(32) + f)
            desc = bytearray(DESC.pack(32, len(f), 0, 0, 0, 0, 0))
            t.process(buf, desc, 1, 0 if direction == IN else 1, now)
            out.append((bytes(buf), bytes(desc), t.get(i), t.drain_events(), t.stats()))
        assert out[0] == out[1], f"segment {k}: C and pure differ"
        _, desc, after, events, _ = out[0]
        verdict, reason = DESC.unpack(desc)[2:4]
        if (flags & 0x02 and not (direction == OUT and flags & 0x10)) or not flags & 0x14:
            assert verdict < 0 and (REASONS[reason] == "tcp_flags" or (direction == OUT and mode == DR))
        if verdict < 0:
            assert after == before and events == []
            continue
        # Forwarded: IPVS's table for the segment, in the table the flow is on.
        table = 1 if direction == OUT else before["in_table"]
        want = TABLES[table][flag_class(flags)][before["state"]]
        seen_output = direction == OUT and before["in_table"] == 2
        assert after["state"] == want and after["expires"] == now + TIMEOUTS[want]
        assert after["in_table"] == (0 if seen_output else before["in_table"])
        moved = want != before["state"] or seen_output
        assert events == ([i << 8 | (0x80 if seen_output else 0) | want] if moved else [])
        now += 0.5
