"""The established-flow fast path (``Director.handle_batch``): exact frames out, and the same bytes the
slow path (``Director.handle``) produces for the same packets, in every mode.

Each conversation opens through the slow path (the SYN is policy: scheduling; FULLNAT's TOA too); its later
packets then go through ``handle_batch`` and must come out of the fast path — not punted — as the exact
frames built here from field values, and as the slow path's own frames for the same packets.
"""

from __future__ import annotations

import pytest

from golden_helpers import (
    ACK, C_MAC, CIP, D0_MAC, D1_MAC, DIP1, FIN, LIP, MSS1452, MSS1460, PSH, RIP, RS_MAC, SYN, VIP, ack_opts, fresh,
    ipip_frame, syn_opts, the_conn, toa,
)
from pylvs.core.batch import Batch
from pylvs.core.pipeline import Send
from pylvs.testing import arp_frame, ip4, tcp_frame, udp_frame

CPORT = 40000
REQ = b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n"
RESP = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def via_batch(d, frames, ifname, now):
    """What the runner does: one batch, sends in arrival order -> [(interface, bytes, fast?)]."""
    b = Batch(size=max(1, len(frames)))
    for f in frames:
        b.add(f)
    punted = dict(d.handle_batch(b.buf, b.desc, b.n, ifname, now))
    out = []
    for i, verdict, frame in b.results():
        if verdict >= 0:
            out.append((d.fast.ifnames[verdict], bytes(frame), True))
        else:
            out += [(a.interface, bytes(a.frame), False) for a in punted[i] if isinstance(a, Send)]
    return out


def via_handle(d, frames, ifname, now):
    out = []
    for f in frames:
        out += [(a.interface, bytes(a.frame), False) for a in d.handle(f, ifname, now) if isinstance(a, Send)]
    return out


def c2v(flags, **kw):
    return tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, flags, **kw)


def open_flow(d, mode, t0=10.0):
    """SYN (and for NAT/FULLNAT the server's SYN-ACK), then the handshake-completing ACK, all slow."""
    d.handle(c2v(SYN, seq=1000, opts=syn_opts(tsval=111), ident=0x1001), "eth0", t0)
    c = the_conn(d)
    rs = {v: k for k, v in RIP.items()}[".".join(str(b) for b in c.daddr)]
    if mode in ("nat", "fullnat"):
        src = (RIP[rs], 8080)
        dst = (CIP, CPORT) if mode == "nat" else (LIP, c.lport)
        d.handle(tcp_frame(RS_MAC[rs], D1_MAC, src[0], dst[0], src[1], dst[1], SYN | ACK, seq=5000, ack=1001,
                           opts=syn_opts(tsval=999, tsecr=111), ident=0x2001), "eth1", t0 + 0.001)
    d.handle(c2v(ACK, seq=1001, ack=5001, opts=ack_opts(112, 999), ident=0x1002), "eth0", t0 + 0.002)
    assert c.state_name == "ESTABLISHED"
    return c, rs


@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_data_packets_take_the_fast_path_byte_exact(mode):
    d, ref = fresh(mode), fresh(mode)
    c, rs = open_flow(d, mode)
    rc, _ = open_flow(ref, mode)
    assert c.fslot >= 0 and rc.fslot >= 0, "an ESTABLISHED flow is handed to the fast path"
    assert (c.daddr, c.lport) == (rc.daddr, rc.lport)

    q = dict(seq=1001, ack=5001, opts=ack_opts(113, 999), ident=0x1003, payload=REQ)
    got = via_batch(d, [c2v(ACK | PSH, **q)], "eth0", 10.5)
    want = {
        "nat": tcp_frame(D1_MAC, RS_MAC[rs], CIP, RIP[rs], CPORT, 8080, ACK | PSH, ttl=63, **q),
        "dr": tcp_frame(D1_MAC, RS_MAC[rs], CIP, VIP, CPORT, 80, ACK | PSH, ttl=64, **q),
        "tun": ipip_frame(RS_MAC[rs], D1_MAC, DIP1, RIP[rs],
                          tcp_frame(C_MAC, D0_MAC, CIP, VIP, CPORT, 80, ACK | PSH, ttl=63, **q)[14:]),
        "fullnat": tcp_frame(D1_MAC, RS_MAC[rs], LIP, RIP[rs], c.lport, 8080, ACK | PSH, ttl=63, **q),
    }[mode]
    assert got == [("eth1", want, True)]
    assert got == [(i, f, True) for i, f, _ in via_handle(ref, [c2v(ACK | PSH, **q)], "eth0", 10.5)]

    if mode in ("nat", "fullnat"):
        r = dict(seq=5001, ack=1001 + len(REQ), opts=ack_opts(1000, 113), ident=0x2002, payload=RESP, win=509)
        dst = (CIP, CPORT) if mode == "nat" else (LIP, c.lport)
        reply = tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], dst[0], 8080, dst[1], ACK | PSH, **r)
        got = via_batch(d, [reply], "eth1", 10.6)
        want = tcp_frame(D0_MAC, C_MAC, VIP, CIP, 80, CPORT, ACK | PSH, ttl=63, **r)
        assert got == [("eth0", want, True)]
        assert got == [(i, f, True) for i, f, _ in via_handle(ref, [reply], "eth1", 10.6)]

    # The fast path moved the deadline: past the slow path's own, the flow lives on.
    slow_deadline = c.expires
    d.tick(slow_deadline + 0.2)  # the last fast packet came 0.498 s after the handshake
    assert c.alive and c.fslot >= 0
    # Its packets are counted for the server and the service.
    st = d.stats()
    tcp = next(s for s in st["services"] if s["service"].startswith("TCP"))
    ref_st = ref.stats()
    ref_tcp = next(s for s in ref_st["services"] if s["service"].startswith("TCP"))
    assert (tcp["pkts_in"], tcp["pkts_out"], tcp["bytes_in"], tcp["bytes_out"]) == (
        ref_tcp["pkts_in"], ref_tcp["pkts_out"], ref_tcp["bytes_in"], ref_tcp["bytes_out"])
    assert st["fast_path"]["forwarded"] == (2 if mode in ("nat", "fullnat") else 1)

    # The teardown stays on the fast path: it moves the TCP state itself (IPVS's tables) and the Director keeps
    # its books from the fast path's events — the same frames, states, deadlines and active/inactive counts
    # as the slow path's own handling of the same packets.
    def same_books():
        d.fast.refresh(c)  # the deadline the fast path moved, pulled in (what the expiry check does)
        assert (c.state_name, c.expires, c.no_output, c.inactive) == (rc.state_name, rc.expires, rc.no_output,
                                                                      rc.inactive)
        assert (c.dest.active, c.dest.inactive) == (rc.dest.active, rc.dest.inactive)

    fin = c2v(FIN | ACK, seq=1001 + len(REQ), ack=5001, opts=ack_opts(114, 1000), ident=0x1004)
    got = via_batch(d, [fin], "eth0", 11.0)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [fin], "eth0", 11.0)]
    assert [fast for *_, fast in got] == [True]
    assert c.fslot >= 0 and c.state_name != "ESTABLISHED" and c.dest.inactive == 1
    same_books()
    if mode in ("nat", "fullnat"):
        dst = (CIP, CPORT) if mode == "nat" else (LIP, c.lport)
        r = dict(seq=5001 + len(RESP), ack=1002 + len(REQ), opts=ack_opts(1001, 114), ident=0x2003, win=509)
        sfin = tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], dst[0], 8080, dst[1], FIN | ACK, **r)
        got = via_batch(d, [sfin], "eth1", 11.1)
        assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [sfin], "eth1", 11.1)]
        assert [fast for *_, fast in got] == [True]
        same_books()
    last = c2v(ACK, seq=1002 + len(REQ), ack=5002 + len(RESP), opts=ack_opts(115, 1001), ident=0x1005)
    got = via_batch(d, [last], "eth0", 11.2)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [last], "eth0", 11.2)]
    same_books()
    # A SYN is always the slow path's (it may reopen or reschedule the flow).
    syn = c2v(SYN, seq=9000, opts=syn_opts(tsval=200), ident=0x1006)
    got = via_batch(d, [syn], "eth0", 11.3)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [syn], "eth0", 11.3)]
    assert all(not fast for *_, fast in got)


@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_handshake_after_the_syn_takes_the_fast_path(mode):
    """The slow path schedules the client's SYN and hands the flow over in SYN_RECV: the server's SYN-ACK and
    the client's ACK are state moves the fast path makes (IPVS's OUTPUT and INPUT tables), with the slow
    path's exact frames and books.  In FULLNAT (examples/fullnat.toml inserts TOA) the fast path also lowers
    the SYN-ACK's MSS by the TOA's 8 bytes and puts the TOA into the ACK, as the slow path does."""
    d, ref = fresh(mode), fresh(mode)
    syn = c2v(SYN, seq=1000, opts=syn_opts(tsval=111), ident=0x1001)
    got = via_batch(d, [syn], "eth0", 10.0)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [syn], "eth0", 10.0)]
    assert [fast for *_, fast in got] == [False]  # a client's SYN is always the slow path's
    c, rc = the_conn(d), the_conn(ref)
    assert c.state_name == "SYN_RECV" and c.fslot >= 0
    rs = {v: k for k, v in RIP.items()}[".".join(str(b) for b in c.daddr)]

    def same_books():
        d.fast.refresh(c)
        assert (c.state_name, c.expires, c.no_output, c.inactive, c.toa_done) == (
            rc.state_name, rc.expires, rc.no_output, rc.inactive, rc.toa_done)
        assert (c.dest.active, c.dest.inactive) == (rc.dest.active, rc.dest.inactive)
        assert {k: v for k, v in d.events.items() if v} == {k: v for k, v in ref.events.items() if v}

    same_books()
    if mode in ("nat", "fullnat"):
        dst = (CIP, CPORT) if mode == "nat" else (LIP, c.lport)
        sa = dict(seq=5000, ack=1001, ident=0x2001)
        synack = tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], dst[0], 8080, dst[1], SYN | ACK,
                           opts=syn_opts(tsval=999, tsecr=111), **sa)
        got = via_batch(d, [synack], "eth1", 10.001)
        assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [synack], "eth1", 10.001)]
        assert [fast for *_, fast in got] == [True]
        mss = MSS1460 if mode == "nat" else MSS1452
        assert got[0][:2] == ("eth0", tcp_frame(D0_MAC, C_MAC, VIP, CIP, 80, CPORT, SYN | ACK, ttl=63,
                                                opts=syn_opts(mss=mss, tsval=999, tsecr=111), **sa))
        same_books()
    a = dict(seq=1001, ack=5001, ident=0x1002)
    ack = c2v(ACK, opts=ack_opts(112, 999), **a)
    got = via_batch(d, [ack], "eth0", 10.002)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [ack], "eth0", 10.002)]
    assert [fast for *_, fast in got] == [True]
    if mode == "fullnat":
        assert got[0][:2] == ("eth1", tcp_frame(D1_MAC, RS_MAC[rs], LIP, RIP[rs], c.lport, 8080, ACK, ttl=63,
                                                opts=toa(CPORT, CIP) + ack_opts(112, 999), **a))
        assert c.toa_done and d.events["toa_inserted"] == 1 and d.events["mss_clamped"] == 1
    assert c.state_name == "ESTABLISHED" and not c.inactive and c.dest.active == 1
    same_books()
    # Handed over at the SYN, nothing slow since: the slow path's header images are gone (Conn.image).
    assert c.rw_in is None and c.rw_out is None
    # The request is forwarded by the fast path (no TOA again).
    q = dict(seq=1001, ack=5001, opts=ack_opts(113, 999), ident=0x1003, payload=REQ)
    got = via_batch(d, [c2v(ACK | PSH, **q)], "eth0", 10.5)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [c2v(ACK | PSH, **q)], "eth0", 10.5)]
    assert [fast for *_, fast in got] == [True]
    same_books()
    if mode in ("nat", "fullnat"):
        # The server's SYN-ACK again (its ACK was lost, say): clamped again in FULLNAT, as the slow path does.
        got = via_batch(d, [synack], "eth1", 10.6)
        assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, [synack], "eth1", 10.6)]
        assert [fast for *_, fast in got] == [True]
        same_books()
    # A frame given to the slow path itself: the images are made again, the frame is the same.
    q2 = dict(seq=1001 + len(REQ), ack=5001, opts=ack_opts(114, 999), ident=0x1004, payload=b"x")
    assert via_handle(d, [c2v(ACK | PSH, **q2)], "eth0", 10.7) == via_handle(ref, [c2v(ACK | PSH, **q2)], "eth0", 10.7)
    assert (c.rw_in is not None) == (mode in ("nat", "fullnat"))  # DR and TUN never need them


@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_batch_of_many_packets_matches_the_slow_path(mode):
    """32 data packets in one batch, both directions mixed where the mode sees replies."""
    d, ref = fresh(mode), fresh(mode)
    c, rs = open_flow(d, mode)
    open_flow(ref, mode)
    frames = [c2v(ACK, seq=1001 + i, ack=5001, ident=0x3000 + i, payload=bytes([i]) * (i + 1)) for i in range(32)]
    got = via_batch(d, frames, "eth0", 12.0)
    assert all(fast for *_, fast in got) and len(got) == 32
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, frames, "eth0", 12.0)]
    if mode in ("nat", "fullnat"):
        # and 32 server replies in one batch the other way
        dst = (CIP, CPORT) if mode == "nat" else (LIP, c.lport)
        replies = [tcp_frame(RS_MAC[rs], D1_MAC, RIP[rs], dst[0], 8080, dst[1], ACK, seq=5001 + 100 * i,
                             ack=1033, ident=0x4000 + i, payload=bytes([i]) * 100) for i in range(32)]
        got = via_batch(d, replies, "eth1", 12.1)
        assert all(fast for *_, fast in got) and len(got) == 32
        assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in via_handle(ref, replies, "eth1", 12.1)]


def test_fullnat_forged_toa_is_punted_and_stripped():
    """A client TOA-kind option in an established flow: the fast path cannot strip, so it punts."""
    d = fresh("fullnat")
    c, rs = open_flow(d, "fullnat")
    forged = c2v(ACK, seq=1001, ack=5001, opts=toa(1, "198.18.0.66"), ident=0x1005, payload=b"x")
    got = via_batch(d, [forged], "eth0", 10.5)
    assert [fast for *_, fast in got] == [False]
    assert d.fast.stats()["punt_toa"] == 1 and d.events["toa_stripped"] == 1
    out = got[0][1]
    assert ip4("198.18.0.66") not in out  # the forged address never reaches the server


def test_ttl_and_mtu_are_punted_to_the_slow_path():
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    low = c2v(ACK, seq=1001, ack=5001, ident=0x1006, ttl=1)
    got = via_batch(d, [low], "eth0", 10.5)
    assert d.fast.stats()["punt_ttl"] == 1 and d.drops["ttl_exceeded"] == 1
    assert [(i, f[23], f[34]) for i, f, _ in got] == [("eth0", 1, 11)]  # ICMP time exceeded to the client
    big = c2v(ACK, seq=1001, ack=5001, ident=0x1007, payload=b"z" * 1500, df=True)
    via_batch(d, [big], "eth0", 10.6)
    assert d.fast.stats()["punt_mtu"] == 1 and d.drops["frag_needed"] == 1


def test_udp_flow_is_fast_after_its_first_packet():
    d, ref = fresh("nat"), fresh("nat")
    frames = [udp_frame(C_MAC, D0_MAC, CIP, VIP, 5000, 53, b"q%d" % i, ident=i + 1) for i in range(4)]
    first = via_batch(d, frames[:1], "eth0", 1.0)
    rest = via_batch(d, frames[1:], "eth0", 1.1)
    assert [fast for *_, fast in first + rest] == [False, True, True, True]
    want = via_handle(ref, frames[:1], "eth0", 1.0) + via_handle(ref, frames[1:], "eth0", 1.1)
    assert [(i, f) for i, f, _ in first + rest] == [(i, f) for i, f, _ in want]


def test_removed_server_takes_its_flows_back():
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    assert c.fslot >= 0
    d.dest_unavailable(c.dest)
    assert c.fslot < 0 and len(d.fast.table) == 0


def test_moved_neighbour_takes_flows_back_and_the_new_mac_is_used():
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    # A UDP flow to another server, on the fast path too: it must stay there.
    other = None
    for sport in range(5000, 5006):
        via_batch(d, [udp_frame(C_MAC, D0_MAC, CIP, VIP, sport, 53, b"q")], "eth0", 10.3)
        other = next(x for x in d.table if x.proto == 17 and x.cport == sport)
        if other.daddr != c.daddr:
            break
    assert other.daddr != c.daddr and other.fslot >= 0
    key = ("eth1", ip4(RIP[rs]))
    d.neigh._static.discard(key)  # make the server's MAC a learned entry, as without [[neighbor]]
    new_mac = "02:00:00:00:09:99"
    d.handle(arp_frame(new_mac, D1_MAC, 2, new_mac, RIP[rs], D1_MAC, DIP1), "eth1", 10.4)
    assert d.events["fast_evicted_neighbor"] == 1 and c.fslot < 0
    assert other.fslot >= 0, "a flow to another server keeps its fast path"
    q = dict(seq=1001, ack=5001, ident=0x1009, payload=b"a")
    got = via_batch(d, [c2v(ACK, **q)], "eth0", 10.5)  # slow once (re-installs with the new MAC) ...
    got += via_batch(d, [c2v(ACK, **q)], "eth0", 10.6)  # ... then fast again
    want = tcp_frame(D1_MAC, new_mac, CIP, RIP[rs], CPORT, 8080, ACK, ttl=63, **q)
    assert got == [("eth1", want, False), ("eth1", want, True)]


def test_idle_fast_flow_expires_when_its_own_deadline_passes():
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    via_batch(d, [c2v(ACK, seq=1001, ack=5001, ident=0x1008)], "eth0", 20.0)
    d.tick(20.0 + 900 - 0.5)
    assert c.alive
    d.tick(20.0 + 900 + 0.5)
    assert not c.alive and len(d.table) == 0 and len(d.fast.table) == 0
    assert c.dest.active == 0 and c.dest.inactive == 0


@pytest.mark.parametrize("mode", ["nat", "dr", "tun", "fullnat"])
def test_a_batch_is_handled_in_arrival_order(mode):
    """RST, SYN, ACK+data of one established flow in one batch: the punted RST and SYN are handled before
    the ACK is looked at, exactly as frame-by-frame handling does (state, deadline, server counts)."""
    d, ref = fresh(mode), fresh(mode)
    c, rs = open_flow(d, mode)
    rc, _ = open_flow(ref, mode)
    fs = [c2v(0x04, seq=1001, ident=0x1101), c2v(SYN, seq=7000, ident=0x1102, opts=syn_opts(tsval=120)),
          c2v(ACK | PSH, seq=7001, ack=5001, ident=0x1103, payload=b"data")]
    got = via_batch(d, fs, "eth0", 11.0)
    want = via_handle(ref, fs, "eth0", 11.0)
    assert [(i, f) for i, f, _ in got] == [(i, f) for i, f, _ in want]
    assert (c.state_name, c.expires, c.dest.active, c.dest.inactive) == (
        rc.state_name, rc.expires, rc.dest.active, rc.dest.inactive)



def test_an_internal_error_costs_one_frame_not_the_batch(monkeypatch):
    """If the slow path ever raises on a punted frame, that frame is a counted drop and the rest of the
    batch (fast frames before and after it) still goes out."""
    d = fresh("nat")
    c, rs = open_flow(d, "nat")
    real = d.handle

    def broken(frame, interface, now):
        if bytes(frame).endswith(b"boom"):
            raise RuntimeError("injected")
        return real(frame, interface, now)

    monkeypatch.setattr(d, "handle", broken)
    fs = [c2v(ACK, seq=1001, ack=5001, ident=0x1301, payload=b"one"),
          c2v(ACK, seq=1004, ack=5001, ident=0x1302, payload=b"boom", ttl=1),  # punted (TTL), then raises
          c2v(ACK, seq=1008, ack=5001, ident=0x1303, payload=b"two")]
    got = via_batch(d, fs, "eth0", 10.5)
    assert [fast for *_, fast in got] == [True, True]
    assert d.drops["internal_error"] == 1 and isinstance(d.last_internal_error, RuntimeError)
