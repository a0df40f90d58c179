"""Differential tests of the fast path: the C extension ``pylvs._native`` against its pure-Python twins
(``pylvs._pure``), and both against an oracle.

The two must agree byte for byte (native/pylvs_native.h says so), so every property here runs the same input
through both and compares everything observable:

* two ``FlowTable`` objects, one C and one pure, with the same key, driven through the same random operations
  (inserts, removes, ``set_fast``, ``clear_fast``, ``set_interface``, ``set_timeouts``, ``set_expires``,
  ``expire``) and the same random batches through ``process``.  The frames are built so that many of them hit
  a flow in the table, in either direction, with everything the fast path looks at varied (TCP flags, TTL
  incl. 0/1, sizes around the egress MTU, TCP options incl. the TOA kind, UDP checksum 0, IP options,
  fragments, headroom before the frame, Ethernet padding, checksum-offload frames with CSUM_PARTIAL or CSUM_VALID),
  plus mutated and garbage frames, in batches of up to 70 (the C core works in groups of 32).  Frames lie
  in the buffer in descriptor order without overlapping, as pylvs.core.batch lays them out;
* the fast path's edges one by one (MTU and TTL boundaries, headroom, TOA, flags, UDP checksum 0/0xFFFF...);
* ``process_until_punt`` called until a batch is consumed, against ``process`` one frame at a time.

A third, independent model runs alongside: the oracle in native_diff_helpers.py, which decides forward or punt
(and why) in the order fastpath.c documents and builds a forward's expected output with the slow path's own
rewrite code.  The checksums, SipHash, the keyed hash and the regression tests for the disagreements found
(all fixed) are in test_native_diff.py.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from pylvs import native

if not native.available():
    pytest.skip(f"pylvs._native is not built or not importable ({native._IMPORT_ERROR}): "
                "nothing to compare the pure twins with", allow_module_level=True)

from native_diff_helpers import (  # noqa: E402
    ADDRS, ANY_FRAME, CSUM_PARTIAL, CSUM_VALID, DESC, DR, FULLNAT, IFACE_IDS, IN, MACS, MODE_NAMES, NAT, OUT, REASONS,
    TABLE_SETTINGS, TOA_KINDS, TUN, Oracle, Twin, _u16, addrs_st, build_frame, chance, draw_frame, macs_st, mtus_st,
    ports_st, ref_sum, verify_forwarded,
)

from pylvs import _native as C  # noqa: E402
from pylvs._pure import checksum as PC  # noqa: E402
from pylvs._pure import flowtable as PF  # noqa: E402
from pylvs.testing import ip4  # noqa: E402

# Not implementation-dependent (both are used explicitly): run in the [native] pass only (tests/conftest.py).
pytestmark = pytest.mark.once


# ====================================================================== FlowTable: the differential test


@TABLE_SETTINGS
@given(st.data())
def test_flowtable_differential(d):
    key = d.draw(st.binary(min_size=16, max_size=16), label="key")
    capacity = d.draw(st.integers(1, 24), label="capacity")
    ndests = d.draw(st.integers(1, 6), label="dests")
    tw = Twin(capacity, key, ndests)
    assert tw.c.key == tw.p.key == key and tw.c.capacity == tw.p.capacity == capacity
    ifaces: dict[int, tuple[bytes, bytes, int]] = {}
    timeouts = [900.0, 300.0]
    now = d.draw(st.sampled_from([0.0, 1000.0, 1e9]), label="start")

    def op_set_interface():
        idx = d.draw(st.sampled_from(IFACE_IDS), label="iface")
        cfg = (d.draw(macs_st), d.draw(addrs_st), 1500 if chance(d, 6) else d.draw(mtus_st, label="mtu"))
        tw.call("set_interface", idx, *cfg)
        ifaces[idx] = cfg

    def op_set_timeouts():
        t = (d.draw(st.sampled_from([900.0, 0.0, -1.0, 0.5]) | st.floats(0, 1e6)),
             d.draw(st.sampled_from([300.0, 0.0, 2.0]) | st.floats(0, 1e6)))
        tw.call("set_timeouts", *t)
        timeouts[:] = t

    def op_insert():
        proto = d.draw(st.sampled_from([6, 17, 6, 17, 1]), label="proto")
        c = (d.draw(addrs_st), d.draw(ports_st))
        v = (d.draw(addrs_st), d.draw(ports_st))
        lo = c if chance(d, 3) else (d.draw(addrs_st), d.draw(ports_st))
        ds = (d.draw(addrs_st), d.draw(ports_st))
        mode = d.draw(st.integers(0, 3), label="mode")
        has_out = d.draw(st.booleans(), label="has_out")
        exp = now + (1e6 if chance(d, 7) else d.draw(st.sampled_from([-5.0, 0.0, 0.25, 10.0]), label="expires in"))
        slot = tw.call("insert", proto, c[0], c[1], v[0], v[1], lo[0], lo[1], ds[0], ds[1], mode, has_out, exp)
        if slot is not None and slot >= 0 and chance(d, 8):
            op_set_fast(slot)

    def live():
        return [s for s in range(capacity) if tw.call("get", s) is not None]

    def some_slot():
        ls = live()
        if ls and chance(d, 9):
            return d.draw(st.sampled_from(ls), label="slot")
        return d.draw(st.integers(0, capacity + 1), label="slot")

    def op_set_fast(slot=None):
        slot = some_slot() if slot is None else slot
        dest = d.draw(st.integers(0, ndests - 1)) if chance(d, 9) else ndests  # ndests: ValueError on both
        tw.call("set_fast", slot, pick_if(), d.draw(macs_st), pick_if(), d.draw(macs_st), dest,
                d.draw(st.sampled_from(TOA_KINDS), label="toa_kind"))

    def pick_if():
        if chance(d, 8):
            return d.draw(st.sampled_from(sorted(ifaces)), label="configured iface")
        return d.draw(st.sampled_from(IFACE_IDS), label="iface")

    def op_clear_fast():
        tw.call("clear_fast", some_slot())

    def op_remove():
        tw.call("remove", some_slot())

    def op_set_expires():
        tw.call("set_expires", some_slot(), now + d.draw(st.sampled_from([-1.0, 0.0, 5.0, 1e6])))

    def op_expire():
        tw.call("expire", now + d.draw(st.sampled_from([0.0, 1.0, 20.0, 1e7])),
                d.draw(st.integers(0, capacity + 3), label="budget"))

    def op_probe():
        t = (d.draw(st.sampled_from([6, 17])), d.draw(addrs_st), d.draw(ports_st), d.draw(addrs_st),
             d.draw(ports_st))
        tw.call("lookup", *t)
        tw.call("hash", *t)

    def op_counters():
        tw.call("dest_counters", d.draw(st.integers(0, ndests - 1)), d.draw(st.booleans(), label="reset"))

    ops = [op_insert, op_insert, op_set_fast, op_clear_fast, op_remove, op_set_expires, op_expire,
           op_set_interface, op_set_timeouts, op_probe, op_counters]

    for _ in range(d.draw(st.integers(1, 4), label="interfaces")):
        op_set_interface()
    if chance(d, 3):
        op_set_timeouts()
    for _ in range(d.draw(st.integers(0, capacity + 2), label="initial flows")):
        op_insert()

    for _round in range(d.draw(st.integers(1, 3), label="rounds")):
        for _ in range(d.draw(st.integers(0, 6), label="ops")):
            d.draw(st.sampled_from(ops), label="op")()
        entries = tw.compare_all()

        # ---- a batch
        ifindex = d.draw(st.sampled_from(list(ifaces)), label="ifindex") if chance(d, 9) else \
            d.draw(st.sampled_from([3, 31, 7, -1, 40]), label="ifindex")
        in_mac = ifaces[ifindex][0] if ifindex in ifaces else d.draw(macs_st)
        buf = bytearray()
        descs = []
        # Mostly small batches; sometimes more than the C core's group of 32 (native/fastpath.c STAGE).
        nframes = d.draw(st.integers(0, 12), label="frames") if chance(d, 9) else \
            d.draw(st.integers(30, 70), label="frames")
        for _ in range(nframes):
            flags = d.draw(st.sampled_from([0, 0, CSUM_PARTIAL, CSUM_VALID, 0xFF]), label="desc flags")
            kind = d.draw(st.sampled_from(["in", "in", "out", "out", "miss", "mutated", "garbage", "testing"]),
                          label="kind")
            if kind in ("in", "out", "mutated") and entries:
                e = entries[d.draw(st.sampled_from(sorted(entries)), label="hit slot")]
                if kind == "out" or (kind == "mutated" and chance(d, 5)):
                    t = (e["daddr"], e["dport"], e["laddr"], e["lport"])
                else:
                    t = (e["caddr"], e["cport"], e["vaddr"], e["vport"])
                dmac = in_mac if chance(d, 9) else d.draw(macs_st)
                proto = e["proto"] if e["proto"] in (6, 17) else d.draw(st.sampled_from([6, 17]))
                f, flags = draw_frame(d, dmac, proto, t[0], t[1], t[2], t[3], e["toa_kind"])
                if kind == "mutated":
                    for _ in range(d.draw(st.integers(1, 3))):
                        i = d.draw(st.integers(0, len(f) - 1))
                        f[i] = d.draw(st.integers(0, 255))
                    if chance(d, 3):
                        del f[d.draw(st.integers(0, len(f))):]
            elif kind == "garbage":
                f = bytearray(d.draw(st.binary(max_size=120)))
                if len(f) >= 14 and chance(d, 5):
                    f[0:6], f[12:14] = in_mac, b"\x08\x00"
            elif kind == "testing":
                f = bytearray(d.draw(ANY_FRAME, label="pylvs.testing frame"))
                if len(f) >= 6 and chance(d, 7):
                    f[0:6] = in_mac
            else:
                f, flags = draw_frame(d, in_mac, d.draw(st.sampled_from([6, 17])), d.draw(addrs_st),
                                      d.draw(ports_st), d.draw(addrs_st), d.draw(ports_st), 254)
            # Headroom: TUN prepends 20 bytes; sometimes less is there (the previous frame's tail, or nothing).
            # Frames lie in the buffer in descriptor order and do not overlap: pylvs.core.batch lays them out
            # so, and the C core relies on it (test_overlapping_descriptors_* in test_native_diff.py).
            gap = d.draw(st.sampled_from([20, 20, 24, 64, 0, 1, 19] if buf else [0, 1, 19, 20, 64]), label="headroom")
            buf += d.draw(st.binary(min_size=gap, max_size=gap))
            off, ln = len(buf), len(f)
            buf += f
            if chance(d, 1):  # a descriptor that does not fit the buffer
                off, ln = d.draw(st.sampled_from([(off, ln + 10_000), (1 << 31, 10), (0xFFFFFFFF, 0xFFFFFFFF),
                                                  (off, 0xFFFFFFFF)]), label="bad desc")
            descs.append((off, ln, flags))
        buf += d.draw(st.binary(max_size=4))
        desc = bytearray()
        for off, ln, flags in descs:
            desc += DESC.pack(off, ln, d.draw(st.integers(-32768, 32767)), d.draw(st.integers(0, 0xFFFF)), 0, 0,
                              flags)  # verdict and reason: ignored on input
        n = len(descs) if chance(d, 9) else d.draw(st.integers(0, len(descs)), label="n")
        now += d.draw(st.sampled_from([0.0, 0.5, 5.0, 100.0]), label="time step")
        note(f"batch: ifindex={ifindex} now={now} n={n} descs={descs} buf={bytes(buf).hex()}")

        orig = bytes(buf)
        oracle = Oracle(tw, ifaces, tuple(timeouts), entries)
        exp_buf, exp_desc = bytearray(buf), bytearray(desc)
        exp_ret = oracle.process(exp_buf, exp_desc, n, ifindex, now)
        buf_c, desc_c = bytearray(buf), bytearray(desc)
        buf_p, desc_p = bytearray(buf), bytearray(desc)
        ret_c = tw.c.process(buf_c, desc_c, n, ifindex, now)
        ret_p = tw.p.process(buf_p, desc_p, n, ifindex, now)

        def descs_of(b):
            return [DESC.unpack_from(b, i * DESC.size) for i in range(len(descs))]

        assert ret_c == ret_p, f"process() returned {ret_c} (C) vs {ret_p} (pure)"
        assert descs_of(desc_c) == descs_of(desc_p), "descriptors differ between C and pure"
        assert bytes(desc_c) == bytes(desc_p)
        assert buf_c == buf_p, "buffers differ between C and pure"
        assert tw.c.stats() == tw.p.stats()
        for i in range(ndests):
            assert tw.c.dest_counters(i) == tw.p.dest_counters(i)
        after = tw.compare_all()

        # ---- both against the oracle (the slow path's rewrite)
        assert descs_of(desc_c) == descs_of(exp_desc), "descriptors differ from the reference"
        assert ret_c == exp_ret
        assert buf_c == exp_buf, "output bytes differ from the reference rewrite"
        assert tw.c.stats() == oracle.stats
        for i in range(ndests):
            assert list(tw.c.dest_counters(i)) == oracle.counters[i]
        assert {s: e["expires"] for s, e in after.items()} == {s: e["expires"] for s, e in oracle.entries.items()}
        assert len(buf_c) == len(orig)
        for _, _, verdict, reason, *_ in descs_of(desc_c)[:n]:
            event(f"punt {REASONS[reason]}" if verdict < 0 else "forwarded")
        for _, _, _, _, mode, direction, udp_in, _ in oracle.checks:
            event(f"forwarded {MODE_NAMES[mode]} {'in' if direction == IN else 'out'}"
                  f"{' udp' if udp_in >= 0 else ''}{' udp-csum-0' if udp_in == 0 else ''}")

        # ---- every forwarded frame is valid on the wire, checked in the C output (unless a later forward wrote
        # over it: a TUN header in too little headroom)
        for k, (_, off, ln, ttl_in, mode, direction, udp_in, l4_ok) in enumerate(oracle.checks):
            if any(o < off + ln and off < o + n_ for _, o, n_, *_ in oracle.checks[k + 1:]):
                continue
            verify_forwarded(buf_c, off, ln, ttl_in, mode, direction, udp_in, l4_ok)

        # ---- the expiry sweep
        tw.call("expire", now + d.draw(st.sampled_from([0.0, 1.0, 400.0, 1e7]), label="sweep at"),
                d.draw(st.sampled_from([0, 1, 3, capacity, 0xFFFFFFFF]), label="budget"))
        tw.compare_all()

    # The keyed hash is the same function on both sides.
    for _ in range(3):
        t = (d.draw(st.integers(0, 255)), d.draw(addrs_st), d.draw(ports_st), d.draw(addrs_st), d.draw(ports_st))
        assert tw.c.hash(*t) == tw.p.hash(*t)


# ====================================================================== FlowTable: the edges, one by one

CLIENT, VIP, RS, LIP = ADDRS[0], ADDRS[2], ADDRS[3], ADDRS[4]
DIP0, DIP1 = ip4("198.18.0.1"), ip4("198.19.0.1")


def run_case(mode: int, direction: int, proto: int = 6, *, mtu: int = 1500, headroom: int = 20, pad: bytes = b"",
             toa_kind: int = 0, fast: bool = True, expires: float = 1e9, now: float = 100.0,
             egress_ok: bool = True, flags_in: int = 0, payload: bytes = b"hello", frame=None, **frame_kw):
    """One flow, one frame through C, pure and the oracle; all three must agree.  Returns (desc, output)."""
    tw = Twin(8, bytes(range(16)), 4)
    ifaces = {0: (MACS[1], DIP0, mtu)}
    if egress_ok:
        ifaces[1] = (MACS[2], DIP1, mtu)
    for i, cfg in ifaces.items():
        tw.call("set_interface", i, *cfg)
    snat, pmap = mode == FULLNAT, mode in (NAT, FULLNAT)
    laddr, lport = (LIP, 50000) if snat else (CLIENT, 40000)
    dport = 8080 if pmap else 80
    slot = tw.call("insert", proto, CLIENT, 40000, VIP, 80, laddr, lport, RS, dport, mode, True, expires)
    assert slot == 0
    if fast:
        tw.call("set_fast", slot, 0, MACS[0], 1, MACS[3], 1, toa_kind)
    if frame is None:
        if direction == IN:
            frame = build_frame(MACS[1], MACS[0], proto, CLIENT, 40000, VIP, 80, payload=payload, **frame_kw)
        else:
            frame = build_frame(MACS[2], MACS[3], proto, RS, dport, laddr, lport, payload=payload, **frame_kw)
    frame = bytes(frame) + pad
    buf = bytearray(headroom) + frame + bytes(3)
    desc = bytearray(DESC.pack(headroom, len(frame), 0, 0, 0, 0, flags_in))
    ifindex = 0 if direction == IN else 1
    oracle = Oracle(tw, ifaces, (900.0, 300.0), tw.slots())
    exp_buf, exp_desc = bytearray(buf), bytearray(desc)
    oracle.process(exp_buf, exp_desc, 1, ifindex, now)
    results = []
    for t in (tw.c, tw.p):
        b, d = bytearray(buf), bytearray(desc)
        t.process(b, d, 1, ifindex, now)
        results.append((bytes(b), bytes(d)))
    assert results[0] == results[1], "C and pure differ"
    assert results[0] == (bytes(exp_buf), bytes(exp_desc)), "the implementations differ from the reference"
    tw.compare_all()
    off, ln, verdict, reason = DESC.unpack(results[0][1])[:4]
    out = results[0][0][off:off + ln]
    if verdict >= 0:
        verify_forwarded(out, 0, ln, bytes(buf)[headroom + 22], mode, direction,
                         _u16.unpack_from(frame, 40)[0] if proto == 17 else -1)
        assert tw.c.dest_counters(1) == ((1, 0, len(frame) - len(pad) - 14, 0) if direction == IN
                                         else (0, 1, 0, len(frame) - len(pad) - 14))
    return (verdict, REASONS[reason] if verdict < 0 else None), out


@pytest.mark.parametrize("proto", [6, 17])
@pytest.mark.parametrize("direction", [IN, OUT])
@pytest.mark.parametrize("mode", [NAT, DR, TUN, FULLNAT])
def test_fastpath_forwards_every_mode(mode, direction, proto):
    (verdict, _), out = run_case(mode, direction, proto)
    assert verdict == (1 if direction == IN else 0)
    assert out[0:6] == (MACS[3] if direction == IN else MACS[0])
    assert out[6:12] == (MACS[2] if direction == IN else MACS[1])


@pytest.mark.parametrize(("mode", "direction", "kw", "expect"), [
    # MTU: the IP total length against the egress MTU (TUN: minus the 20-byte outer header)
    (NAT, IN, {"mtu": 20 + 20 + 5}, None),
    (NAT, IN, {"mtu": 20 + 20 + 4}, "mtu"),
    (NAT, OUT, {"mtu": 20 + 20 + 4}, "mtu"),
    (TUN, IN, {"mtu": 20 + 20 + 5 + 20}, None),
    (TUN, IN, {"mtu": 20 + 20 + 5 + 19}, "mtu"),
    (TUN, IN, {"mtu": 65535, "payload": bytes(65535 - 20 - 20 - 20)}, None),  # outer length 65535
    (TUN, IN, {"mtu": 65535, "payload": bytes(65535 - 20 - 20 - 19)}, "mtu"),  # 65536 does not fit
    (NAT, IN, {"mtu": 65535, "payload": bytes(65535 - 20 - 20)}, None),
    (DR, IN, {"mtu": 20 + 20 + 5}, None),
    # TTL: routed modes need > 1; DR leaves the IP header alone
    (NAT, IN, {"ttl": 2}, None),
    (NAT, IN, {"ttl": 1}, "ttl"),
    (FULLNAT, OUT, {"ttl": 1}, "ttl"),
    (TUN, IN, {"ttl": 0}, "ttl"),
    (DR, IN, {"ttl": 1}, None),
    (DR, IN, {"ttl": 0}, None),
    # headroom for the TUN header
    (TUN, IN, {"headroom": 20}, None),
    (TUN, IN, {"headroom": 19}, "headroom"),
    (NAT, IN, {"headroom": 0}, None),
    (TUN, OUT, {"headroom": 0}, None),
    # TCP flags: anything that changes state goes to the slow path
    (NAT, IN, {"flags": 0x02}, "tcp_flags"),
    (NAT, IN, {"flags": 0x12}, "tcp_flags"),
    (NAT, IN, {"flags": 0x11}, "tcp_flags"),
    (NAT, IN, {"flags": 0x14}, "tcp_flags"),
    (NAT, IN, {"flags": 0x00}, "tcp_flags"),
    (NAT, IN, {"flags": 0x08}, "tcp_flags"),
    (NAT, IN, {"flags": 0xF8}, None),
    # a client-supplied option of the TOA kind (FULLNAT inbound TCP only), read up to EOL
    (FULLNAT, IN, {"toa_kind": 254, "tcp_opts": b"\x01\x01\xfe\x08" + bytes(6) + b"\x00\x00"}, "toa"),
    (FULLNAT, IN, {"toa_kind": 254, "tcp_opts": b"\x00\x01\xfe\x08" + bytes(6) + b"\x00\x00"}, None),
    (FULLNAT, IN, {"toa_kind": 254, "tcp_opts": b"\x02\x01\xfe\x08" + bytes(6) + b"\x00\x00"}, None),
    (FULLNAT, IN, {"toa_kind": 254, "tcp_opts": b"\xfd\x08" + bytes(6) + b"\x01\x01\x01\x00"}, None),
    (FULLNAT, IN, {"toa_kind": 253, "tcp_opts": b"\xfd\x08" + bytes(6) + b"\x01\x01\x01\x00"}, "toa"),
    (FULLNAT, OUT, {"toa_kind": 254, "tcp_opts": b"\xfe\x08" + bytes(6) + b"\x00\x00\x00\x00"}, None),
    (NAT, IN, {"toa_kind": 254, "tcp_opts": b"\xfe\x08" + bytes(6) + b"\x00\x00\x00\x00"}, None),
    (FULLNAT, IN, {"toa_kind": 0, "tcp_opts": b"\xfe\x08" + bytes(6) + b"\x00\x00\x00\x00"}, None),
    # fragments and IP options; DF and the reserved bit are not fragmentation
    (NAT, IN, {"frag": 0x2000}, "fragment"),
    (NAT, IN, {"frag": 0x0001}, "fragment"),
    (NAT, IN, {"frag": 0x0000}, None),
    (TUN, IN, {"frag": 0x8000}, None),
    (TUN, IN, {"frag": 0xC000}, None),
    (NAT, IN, {"ip_opts": b"\x01\x01\x01\x00"}, "ip_options"),
    # the flow's state
    (NAT, IN, {"fast": False}, "not_fast"),
    (NAT, IN, {"expires": 100.0}, "expired"),
    (NAT, IN, {"expires": 100.0 + 1e-9}, None),
    (NAT, IN, {"egress_ok": False}, "interface"),
    # Ethernet padding is trimmed
    (NAT, IN, {"pad": bytes(6)}, None),
    (TUN, IN, {"pad": b"\xff" * 9}, None),
    # checksum offload: a partial checksum is finished on the way out (and is bad without the flag); one the
    # kernel says it checked is not summed again
    (NAT, IN, {"partial": True, "flags_in": CSUM_PARTIAL}, None),
    (FULLNAT, OUT, {"partial": True, "flags_in": CSUM_PARTIAL}, None),
    (NAT, IN, {"partial": True}, "malformed"),
    (NAT, IN, {"flags_in": CSUM_PARTIAL | 0xF0}, None),
    (NAT, IN, {"flags_in": CSUM_VALID}, None),
])
def test_fastpath_edges(mode, direction, kw, expect):
    (verdict, reason), out = run_case(mode, direction, 6, **kw)
    assert reason == expect, f"expected {expect or 'forward'}, got {reason or 'forward'}"
    if "pad" in kw and verdict >= 0:
        assert len(out) == 14 + _u16.unpack_from(out, 16)[0]


@pytest.mark.parametrize("mode", [NAT, FULLNAT])
@pytest.mark.parametrize("direction", [IN, OUT])
def test_fastpath_udp_checksums(mode, direction):
    """UDP: 0 ("no checksum") stays 0; a rewrite whose checksum comes out 0 sends 0xFFFF (RFC 768)."""
    (verdict, _), out = run_case(mode, direction, 17, udp_csum0=True)
    assert verdict >= 0 and _u16.unpack_from(out, 40)[0] == 0
    # Find the payload word that makes the output's checksum 0, by computing the output with payload 0.
    (_, _), out = run_case(mode, direction, 17, payload=b"\x00\x00")
    seg = bytearray(out[34:])
    seg[6:8] = b"\x00\x00"
    rest = ref_sum(out[26:34] + struct.pack("!BBH", 0, 17, len(seg)) + seg)
    word = 0xFFFF - rest  # the sum becomes 0xFFFF: the checksum computes to 0
    (verdict, _), out = run_case(mode, direction, 17, payload=_u16.pack(word))
    assert verdict >= 0 and _u16.unpack_from(out, 40)[0] == 0xFFFF


# ====================================================================== process_until_punt


def _flows_table(T):
    """Four flows on the fast path, one per mode, client ports 40000..40003, interfaces 0 (client side)
    and 1 (server side)."""
    t = T(16, bytes(16), 4)
    t.set_interface(0, MACS[1], ip4("198.18.0.1"), 1500)
    t.set_interface(1, MACS[2], ip4("198.19.0.1"), 1500)
    for i, mode in enumerate((NAT, DR, TUN, FULLNAT)):
        laddr, lport = (ADDRS[4], 1024 + i) if mode == FULLNAT else (ADDRS[0], 40000 + i)
        s = t.insert(6, ADDRS[0], 40000 + i, ADDRS[2], 80, laddr, lport, ADDRS[3], 8080 if mode in (NAT, FULLNAT)
                     else 80, mode, mode in (NAT, FULLNAT), 1e9)
        t.set_fast(s, 0, MACS[0], 1, MACS[3], 1, 254 if mode == FULLNAT else 0)
    return t


@st.composite
def batches(draw):
    frames_ = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.integers(0, 3)) == 0:
            frames_.append(bytearray(draw(ANY_FRAME)))
            continue
        i = draw(st.integers(0, 3))
        flags = draw(st.sampled_from([0x10, 0x18, 0x11, 0x04, 0x02, 0x12, 0x00]))
        frames_.append(build_frame(MACS[1], MACS[0], 6, ADDRS[0], 40000 + i, ADDRS[2], 80, flags=flags,
                                   ttl=draw(st.sampled_from([64, 1, 2])), payload=draw(st.binary(max_size=40)),
                                   partial=draw(st.booleans())))
    return frames_


def _lay_out(frames_, partial_flags):
    buf, desc, off = bytearray(), bytearray(), 0
    for f, p in zip(frames_, partial_flags):
        buf += bytes(64) + f
        desc += DESC.pack(off + 64, len(f), 0, 0, 0, 0, CSUM_PARTIAL if p else 0)
        off += 64 + len(f)
    return buf, desc


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(fs=batches(), data=st.data())
def test_process_until_punt_is_one_at_a_time(fs, data):
    """process_until_punt, called until the batch is consumed, gives C == pure == process() on one frame at a
    time (the Director's in-order semantics), and each call stops right after its first punt."""
    flags = [data.draw(st.booleans()) for _ in fs]
    results = []
    for T in (C.FlowTable, PF.FlowTable):
        t = _flows_table(T)
        buf, desc = _lay_out(fs, flags)
        i, calls = 0, []
        while i < len(fs):
            k = t.process_until_punt(buf, memoryview(desc)[i * DESC.size:], len(fs) - i, 0, 5.0)
            assert 1 <= k <= len(fs) - i
            got = [DESC.unpack_from(desc, j * DESC.size) for j in range(i, i + k)]
            assert all(g[2] >= 0 for g in got[:-1]), "went on past a punt"
            assert got[-1][2] < 0 or i + k == len(fs), "stopped early at a forwarded frame"
            calls.append(k)
            i += k
        results.append((bytes(buf), bytes(desc), t.stats(), calls, [t.expires(s) for s in range(4)]))
    assert results[0] == results[1]
    # One frame per call: the reference for in-order processing.
    t = _flows_table(PF.FlowTable)
    buf, desc = _lay_out(fs, flags)
    for j in range(len(fs)):
        d = memoryview(desc)[j * DESC.size:(j + 1) * DESC.size]
        t.process(buf, d, 1, 0, 5.0)
    assert (bytes(buf), bytes(desc), t.stats()) == results[1][:3]
