"""FULLNAT's TOA and MSS clamp on the fast path: C and the pure twin agree byte for byte, entry for entry and
event for event, and what they do is what the slow path does (pylvs/core/toa.py ``insert_toa``,
``clamp_mss``; pipeline.py ``_toa_due``).

A FULLNAT flow with TOA (kind 254) in a random state, its TOA due or done, gets segments with random flags,
TCP options (clean ones, EOL, malformed, forged TOAs, odd MSS lengths), payloads, partial checksums, MTUs and
headroom.  Whatever is forwarded has valid IP and TCP checksums.  The client's ACK in SYN_RECV with its TOA
due is either punted untouched or forwarded with exactly the TOA in front of its options (an event says so,
and the entry's TOA is no longer due); a server's SYN-ACK is forwarded with its MSS 8 lower (an event says so)
or punted.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pylvs import native

if not native.available():
    pytest.skip(f"pylvs._native is not built or not importable ({native._IMPORT_ERROR}): "
                "nothing to compare the pure twins with", allow_module_level=True)

from native_diff_helpers import (  # noqa: E402
    ADDRS, CSUM_PARTIAL, DESC, FULLNAT, MACS, REASONS, build_frame, ref_sum, tcp_options,
)

from pylvs import _native as C  # noqa: E402
from pylvs._pure import flowtable as PF  # noqa: E402
from pylvs.core.fastpath import TCP_NEXT  # noqa: E402
from pylvs.core.packet import iter_tcp_options  # noqa: E402
from pylvs.core.tcpstate import STATES, sES, sSR  # noqa: E402
from pylvs.testing import ip4  # noqa: E402

pytestmark = pytest.mark.once  # both implementations are used explicitly
TIMEOUTS = [float(10 + 7 * i) for i in range(len(STATES))]
CADDR, CPORT, VADDR, LADDR, LPORT, DADDR = ADDRS[0], 40000, ADDRS[2], ip4("198.19.0.2"), 5000, ADDRS[3]
_u16 = struct.Struct("!H")
SYN, RST, ACK = 0x02, 0x04, 0x10


def _table(T, mtu, state, toa_due):
    t = T(16, bytes(16), 4)
    t.set_interface(0, MACS[1], ip4("198.18.0.1"), 1500)
    t.set_interface(1, MACS[2], ip4("198.19.0.1"), mtu)
    t.set_tcp_states(TCP_NEXT, TIMEOUTS)
    s = t.insert(6, CADDR, CPORT, VADDR, 80, LADDR, LPORT, DADDR, 8080, FULLNAT, True, 1e9)
    t.set_fast(s, 0, MACS[0], 1, MACS[3], 1, 254, state, 0, toa_due)
    return t, s


def _options(f: bytes, at: int) -> tuple[int, bytes]:
    """(doff, options) of the TCP header at ``at``."""
    doff = (f[at + 12] >> 4) * 4
    return doff, bytes(f[at + 20:at + doff])


def _mss(opts: bytes) -> int | None:
    """The first MSS option's value, found as the slow path's clamp_mss finds it."""
    return next((_u16.unpack_from(opts, o + 2)[0] for o, k, ln in iter_tcp_options(opts, 0, len(opts))
                 if k == 2 and ln == 4), None)


def _clean(opts: bytes) -> bool:
    """Well formed to the end (the slow path's walk reaches it), no option of the TOA's kind at all (the fast
    path punts any)."""
    walked = list(iter_tcp_options(opts, 0, len(opts)))
    return sum(ln for _, _, ln in walked) == len(opts) and all(k != 254 for _, k, _ in walked)


def _valid(f: bytes) -> None:
    ip = f[14:34]
    assert ref_sum(ip) == 0xFFFF, "IP header checksum"
    total = _u16.unpack_from(ip, 2)[0]
    seg = f[34:14 + total]
    assert ref_sum(ip[12:20] + struct.pack("!BBH", 0, 6, len(seg)) + seg) == 0xFFFF, "TCP checksum"


@settings(max_examples=500, deadline=None)
@given(data=st.data(), out=st.booleans(), plain=st.integers(0, 3))
def test_toa_and_mss_c_equals_pure_equals_slow_path(data, out, plain):
    d = data
    if plain:  # mostly the handshake itself: the ACK in SYN_RECV with its TOA due, the server's SYN-ACK
        state, toa_due, headroom = sSR, True, d.draw(st.sampled_from([32, 32, 32, 8, 7]), label="headroom")
        flags = (SYN | ACK) if out else d.draw(st.sampled_from([ACK, ACK | 0x08]), label="flags")
    else:
        state = d.draw(st.sampled_from([sSR, sES, 0, 4, 7]), label="state")
        toa_due = d.draw(st.booleans(), label="toa_due")
        headroom = d.draw(st.sampled_from([32, 8, 4, 0]), label="headroom")
        flags = d.draw(st.sampled_from([ACK, SYN | ACK, RST | ACK, 0x11, SYN, SYN | ACK | RST])
                       | st.integers(0, 255), label="flags")
    opts = b"" if d.draw(st.integers(0, 4)) == 0 else tcp_options(d, 254)
    if plain or d.draw(st.booleans()):  # the shapes a real handshake has, and an MSS at an odd offset
        opts = d.draw(st.sampled_from([b"\x01\x01\x08\x0a" + bytes(8), b"\x02\x04\x05\xb4\x04\x02\x08\x0a"
                                       + bytes(8) + b"\x01\x03\x03\x07", b"\x02\x04\x00\x08",
                                       b"\x01\x02\x04\x05\xb4\x01\x01\x01", b"\x02\x04\x05\xb4", opts]),
                      label="options")
    payload = d.draw(st.binary(max_size=40), label="payload")
    partial = d.draw(st.booleans(), label="partial")
    if out:
        f = build_frame(MACS[2], MACS[3], 6, DADDR, 8080, LADDR, LPORT, flags=flags, tcp_opts=opts, payload=payload,
                        partial=partial)
    else:
        f = build_frame(MACS[1], MACS[0], 6, CADDR, CPORT, VADDR, 80, flags=flags, tcp_opts=opts, payload=payload,
                        partial=partial)
    mtu = d.draw(st.sampled_from([1500, len(f) - 14 + 7, len(f) - 14 + 8]), label="mtu")
    res = []
    for T in (C.FlowTable, PF.FlowTable):
        t, s = _table(T, mtu, state, toa_due)
        before = t.get(s)
        buf = bytearray(bytes(headroom) + f + bytes(8))
        desc = bytearray(DESC.pack(headroom, len(f), 0, 0, 0, 0, CSUM_PARTIAL if partial else 0))
        t.process(buf, desc, 1, 1 if out else 0, 5.0)
        res.append((bytes(buf), bytes(desc), t.get(s), t.drain_events(), t.stats()))
    assert res[0] == res[1], "C and pure differ"
    buf, desc, after, events, _ = res[0]
    off, ln, verdict, reason = DESC.unpack(desc)[:4]
    if plain and not out and _clean(opts) and headroom >= 8 and len(opts) + 28 <= 40 + 20 and len(f) - 14 + 8 <= mtu:
        assert verdict >= 0, f"a plain handshake ACK with room for the TOA was punted ({REASONS[reason]})"
    event(f"verdict {'punt ' + REASONS[reason] if verdict < 0 else 'forward'} ev {(events or [0])[0] & 0xE0:#x}")
    if verdict < 0:
        assert buf[headroom:headroom + len(f)] == f and after == before and events == []
        return
    o = bytes(buf[off:off + ln])
    _valid(o)
    doff_in, opts_in = _options(f, 34)
    doff_out, opts_out = _options(o, 34)
    ev = events[0] if events else 0
    due = (not out and before["toa_due"] and before["state"] == sSR and flags & ACK and not flags & (RST | SYN))
    if due:
        # insert_toa: the TOA first, the client's options behind it as they were, 8 bytes more of everything
        assert ev & PF.EV_TOA and not after["toa_due"], "the TOA was due: inserted, or the frame punted"
        assert (doff_out, opts_out) == (doff_in + 8, bytes((254, 8)) + _u16.pack(CPORT) + CADDR + opts_in)
        assert ln == len(f) + 8 and o[34 + doff_out:] == f[34 + doff_in:]
    else:
        assert not ev & PF.EV_TOA and after["toa_due"] == before["toa_due"]
        assert (doff_out, ln) == (doff_in, len(f))
    if out and flags & SYN:
        mss_in = _mss(opts_in)
        clamped = mss_in is not None and mss_in > 8
        assert bool(ev & PF.EV_MSS) == clamped
        assert _mss(opts_out) == (mss_in - 8 if clamped else mss_in)
    else:
        assert not ev & PF.EV_MSS
        if not due:
            assert opts_out == opts_in
    assert reason == 0
