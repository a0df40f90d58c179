"""Hypothesis properties of the whole datapath (pylvs.core.pipeline.Director).

* every frame the director sends carries valid IPv4 header and TCP/UDP/ICMP
  checksums (outer and inner for IP-in-IP, the quoted header for ICMP errors),
  checked with an independent checksum written here;
* NAT/FULLNAT replies restore the client's view (VIP:vport -> client:cport);
* FULLNAT never hands out a colliding (LIP, lport) and counts exhaustion;
* any byte string on any interface gives actions or counted drops, never an
  exception.
"""

from __future__ import annotations

import copy
import struct
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylvs.config import load_config, parse_config
from pylvs.core.pipeline import Absorb, Director, Drop, Hold, Send
from pylvs.core.tcpstate import sES
from pylvs.testing import frames, icmp_error_frame, ip4, mac, tcp_frame, udp_frame

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODES = ("nat", "dr", "tun", "fullnat")
CONFIGS = {m: load_config(EXAMPLES / f"{m}.toml") for m in MODES}

VIP = ip4("198.18.0.100")
DIP = ip4("198.19.0.1")
LIP = ip4("198.19.0.250")
RIPS = {ip4(f"198.19.0.{h}"): mac(f"02:00:00:00:02:{h}") for h in (11, 12, 13)}
CLIENT_MAC = mac("02:00:00:00:00:10")
ETH0_MAC = mac("02:00:00:00:01:01")
ETH1_MAC = mac("02:00:00:00:01:02")
CLIENT_MAC_S = "02:00:00:00:00:10"
ETH0_MAC_S = "02:00:00:00:01:01"
ETH1_MAC_S = "02:00:00:00:01:02"

VPORT = {"tcp": 80, "udp": 53}
RPORT = {("tcp", "nat"): 8080, ("tcp", "fullnat"): 8080, ("tcp", "dr"): 80, ("tcp", "tun"): 80,
         ("udp", "nat"): 5353, ("udp", "fullnat"): 5353, ("udp", "dr"): 53, ("udp", "tun"): 53}

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
ICMP_ERRORS = (3, 4, 5, 11, 12)
TOA_KIND = 254

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ====================================================================== independent checks

def ref_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 one's-complement sum folded to 16 bits, word by word."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = initial
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ref_checksum(data: bytes) -> int:
    return (~ref_sum(data)) & 0xFFFF


def be16(b: bytes, off: int = 0) -> int:
    return struct.unpack_from("!H", b, off)[0]


def l4_ok(proto: int, src: bytes, dst: bytes, seg: bytes) -> bool:
    pseudo = src + dst + bytes((0, proto)) + struct.pack("!H", len(seg))
    return ref_sum(pseudo + seg) == 0xFFFF


def check_quoted(inner: bytes, where: str) -> None:
    """The datagram quoted in an ICMP error: its IP header checksum must hold;
    when quoted whole, its L4 checksum too."""
    if len(inner) < 20:
        return
    ihl = (inner[0] & 0x0F) * 4
    assert inner[0] >> 4 == 4 and ihl >= 20, f"{where}: quoted datagram is not IPv4"
    if len(inner) < ihl:
        return
    assert ref_sum(inner[:ihl]) == 0xFFFF, f"{where}: bad quoted IPv4 header checksum"
    if be16(inner, 2) == len(inner):
        check_ip(inner, where + " (quoted whole)")


def check_ip(ip: bytes, where: str) -> None:
    assert len(ip) >= 20, f"{where}: short IPv4 datagram"
    ihl = (ip[0] & 0x0F) * 4
    assert ip[0] >> 4 == 4 and ihl >= 20, f"{where}: not IPv4"
    assert be16(ip, 2) == len(ip), f"{where}: IP total length {be16(ip, 2)} != {len(ip)} bytes sent"
    assert ref_sum(ip[:ihl]) == 0xFFFF, f"{where}: bad IPv4 header checksum"
    if be16(ip, 6) & 0x3FFF:
        return  # a fragment: its L4 is checked on the reassembled datagram
    proto = ip[9]
    src, dst = ip[12:16], ip[16:20]
    seg = ip[ihl:]
    if proto == 6:
        assert len(seg) >= 20, f"{where}: short TCP"
        doff = (seg[12] >> 4) * 4
        assert 20 <= doff <= len(seg), f"{where}: bad TCP data offset"
        assert l4_ok(6, src, dst, seg), f"{where}: bad TCP checksum"
    elif proto == 17:
        assert len(seg) >= 8 and be16(seg, 4) == len(seg), f"{where}: bad UDP length"
        if be16(seg, 6) != 0:
            assert l4_ok(17, src, dst, seg), f"{where}: bad UDP checksum"
    elif proto == 1:
        assert len(seg) >= 8, f"{where}: short ICMP"
        assert ref_sum(seg) == 0xFFFF, f"{where}: bad ICMP checksum"
        if seg[0] in ICMP_ERRORS:
            check_quoted(seg[8:], where + " ICMP inner")
    elif proto == 4:
        check_ip(seg, where + " IPIP inner")


def reassemble(ips: list[bytes]) -> bytes:
    """Put fragments of one datagram back together (checks they tile it exactly)."""
    ips = sorted(ips, key=lambda b: (be16(b, 6) & 0x1FFF))
    first = ips[0]
    ihl = (first[0] & 0x0F) * 4
    payload = b""
    for i, f in enumerate(ips):
        fo = (be16(f, 6) & 0x1FFF) * 8
        assert fo == len(payload), "fragments leave a hole or overlap"
        more = bool(be16(f, 6) & 0x2000)
        assert more == (i < len(ips) - 1), "MF bit wrong"
        payload += f[(f[0] & 0x0F) * 4:]
    h = bytearray(first[:ihl])
    struct.pack_into("!H", h, 2, ihl + len(payload))
    struct.pack_into("!H", h, 6, be16(first, 6) & 0x4000)
    h[10:12] = b"\x00\x00"
    struct.pack_into("!H", h, 10, ref_checksum(bytes(h)))
    return bytes(h) + payload


def check_sends(actions) -> list[tuple[str, str, bytes]]:
    """Verify every Send; returns (interface, kind, IP datagram) with fragments reassembled."""
    out = []
    frags: dict[tuple, list[bytes]] = {}
    for a in actions:
        if not isinstance(a, Send):
            continue
        f = bytes(a.frame)
        assert len(f) >= 14
        if f[12:14] == b"\x08\x06":
            continue  # ARP
        assert f[12:14] == b"\x08\x00", "unexpected ethertype"
        assert f[6:12] == (ETH0_MAC if a.interface == "eth0" else ETH1_MAC), "source MAC is not ours"
        ip = f[14:]
        check_ip(ip, f"{a.kind} on {a.interface}")
        if be16(ip, 6) & 0x3FFF:
            frags.setdefault((a.interface, ip[12:20], ip[4:6], ip[9]), []).append(ip)
            continue
        out.append((a.interface, a.kind, ip))
    for (ifn, *_), parts in frags.items():
        whole = reassemble(parts)
        check_ip(whole, f"reassembled on {ifn}")
        out.append((ifn, "forward", whole))
    return out


def tcp_option_walk(seg: bytes):
    """(kind, data) of each TCP option, parsed the way the RS-side TOA module does."""
    doff = (seg[12] >> 4) * 4
    i, end = 20, doff
    while i < end:
        k = seg[i]
        if k == 0:
            return
        if k == 1:
            i += 1
            continue
        if i + 1 >= end:
            return
        ln = seg[i + 1]
        if ln < 2 or i + ln > end:
            return
        yield k, seg[i + 2:i + ln]
        i += ln


def l4_of(ip: bytes) -> bytes:
    return ip[(ip[0] & 0x0F) * 4:]


def tuple_of(ip: bytes) -> tuple[bytes, int, bytes, int]:
    ihl = (ip[0] & 0x0F) * 4
    return ip[12:16], be16(ip, ihl), ip[16:20], be16(ip, ihl + 2)


def check_accounting(d: Director) -> None:
    """dest.active/inactive agree with the connections the table holds."""
    per: dict[int, list] = {}
    for c in d.table:
        per.setdefault(id(c.dest), []).append(c)
    for s in d.services:
        for dest in s.dests:
            conns = per.get(id(dest), [])
            assert dest.active == sum(1 for c in conns if not c.inactive), dest.label
            assert dest.inactive == sum(1 for c in conns if c.inactive), dest.label
            for c in conns:
                if c.proto == 6 and c.state != 0:
                    assert c.inactive == (c.state != sES)


# ====================================================================== flow driver

client_hosts = st.integers(2, 254).filter(lambda h: h not in (1, 100))
cports = st.integers(1, 65535)
small_payloads = st.binary(max_size=48)
big_payloads = st.integers(1350, 1480).map(lambda n: bytes((i * 7 + 3) & 0xFF for i in range(n)))
FORGED_TOA = b"\xfe\x08\x27\x0f\x01\x02\x03\x04"  # a client claiming to be 1.2.3.4:9999
OPTION_PIECES = [b"\x01", b"\x02\x04\x05\xb4", b"\x03\x03\x07", b"\x04\x02", b"\x08\x0a" + b"\x11" * 8,
                 FORGED_TOA, b"\x00"]
tcp_opts = st.lists(st.sampled_from(OPTION_PIECES), max_size=5).map(
    lambda xs: b"".join(xs)).map(lambda b: (b + b"\x00" * (-len(b) % 4))[:40])


def events(ttls, payloads):
    return st.lists(st.fixed_dictionaries({
        "flow": st.integers(0, 3),
        "kind": st.sampled_from(["c", "c", "c", "s", "s", "s", "icmp_s", "icmp_c"]),
        "flags": st.one_of(st.sampled_from([ACK, ACK | PSH, SYN | ACK, FIN | ACK, RST, RST | ACK, SYN, FIN]),
                           st.integers(0, 255)),
        "payload": payloads,
        "opts": tcp_opts,
        "ttl": ttls,
        "dt": st.sampled_from([0.0, 0.001, 0.25]),
        "quote": st.sampled_from([28, 48, 576]),
        "seq": st.integers(0, 2**32 - 1),
        "udp_zero_sum": st.booleans(),
        "ipopts": st.sampled_from(IP_OPTIONS),
    }), min_size=1, max_size=14)


# one entry per connection: (client host, client port) are unique
flows_st = st.lists(st.tuples(client_hosts, cports, st.sampled_from(["tcp", "udp"])), min_size=1, max_size=4,
                    unique_by=lambda f: (f[0], f[1]))


IP_OPTIONS = [b"", b"", b"", b"\x01\x01\x01\x00", b"\x07\x07\x04\x00\x00\x00\x00\x00",
              b"\x94\x04\x00\x00"]  # none, NOP padding, record route, router alert


def with_ip_options(frame: bytes, opts: bytes) -> bytes:
    """Re-emit ``frame`` with IPv4 options (the L4 checksum does not cover them)."""
    if not opts:
        return frame
    assert len(opts) % 4 == 0
    ip = bytearray(frame[14:])
    hdr = bytearray(ip[:20]) + opts
    hdr[0] = 0x40 | (len(hdr) // 4)
    struct.pack_into("!H", hdr, 2, be16(ip, 2) + len(opts))
    hdr[10:12] = b"\x00\x00"
    struct.pack_into("!H", hdr, 10, ref_checksum(bytes(hdr)))
    return frame[:14] + bytes(hdr) + bytes(ip[20:])


def _zero_udp_sum(frame: bytes) -> bytes:
    b = bytearray(frame)
    b[14 + 20 + 6:14 + 20 + 8] = b"\x00\x00"
    return bytes(b)


class FlowDriver:
    def __init__(self, mode: str, flows, check_view: bool) -> None:
        self.mode = mode
        self.d = Director(CONFIGS[mode])
        self.flows = flows
        self.check_view = check_view
        self.started = [False] * len(flows)
        self.last_in: list[bytes | None] = [None] * len(flows)   # what the RS last received (IP)
        self.last_out: list[bytes | None] = [None] * len(flows)  # what the client last received (IP)
        self.now = 1000.0

    def client_frame(self, i, e, flags):
        host, cport, proto = self.flows[i]
        c = f"198.18.0.{host}"
        if proto == "tcp":
            f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, VPORT[proto], flags,
                          seq=e["seq"], payload=e["payload"], opts=e["opts"], ttl=e["ttl"])
        else:
            f = udp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, VPORT[proto], e["payload"],
                          ttl=e["ttl"])
            f = _zero_udp_sum(f) if e["udp_zero_sum"] else f
        return with_ip_options(f, e["ipopts"])

    def rs_reply_frame(self, i, e):
        ip = self.last_in[i]
        src, sport, dst, dport = tuple_of(ip)
        rs = ".".join(map(str, dst))
        to = ".".join(map(str, src))
        if self.flows[i][2] == "tcp":
            f = tcp_frame(RIPS[dst], ETH1_MAC_S, rs, to, dport, sport, e["flags"], seq=e["seq"],
                          payload=e["payload"], opts=e["opts"], ttl=e["ttl"])
        else:
            f = udp_frame(RIPS[dst], ETH1_MAC_S, rs, to, dport, sport, e["payload"], ttl=e["ttl"])
            f = _zero_udp_sum(f) if e["udp_zero_sum"] else f
        return with_ip_options(f, e["ipopts"])

    def step(self, e) -> None:
        i = e["flow"] % len(self.flows)
        host, cport, proto = self.flows[i]
        kind = e["kind"]
        flags = e["flags"]
        if not self.started[i]:
            kind = "c"
            flags = SYN | (flags & (PSH | URG | ECE | CWR))
            self.started[i] = True
        routed_back = self.mode in ("nat", "fullnat")
        if kind in ("s", "icmp_s") and (not routed_back or self.last_in[i] is None):
            kind = "c"
        self.now += e["dt"]
        if kind == "c":
            frame, ifn = self.client_frame(i, e, flags), "eth0"
        elif kind == "s":
            frame, ifn = self.rs_reply_frame(i, e), "eth1"
        elif kind == "icmp_s":
            quoted = self.last_in[i]
            src, _, dst, _ = tuple_of(quoted)
            frame = icmp_error_frame(RIPS[dst], ETH1_MAC_S, ".".join(map(str, dst)), ".".join(map(str, src)),
                                     3, e["flags"] % 16, quoted[:e["quote"]], ttl=e["ttl"])
            ifn = "eth1"
        else:  # icmp_c: the client reports an error about a reply it got
            quoted = self.last_out[i]
            if quoted is None or not routed_back:
                vport = VPORT[proto]
                c = f"198.18.0.{host}"
                if proto == "tcp":
                    quoted = tcp_frame(ETH0_MAC_S, CLIENT_MAC_S, "198.18.0.100", c, vport, cport, ACK)[14:]
                else:
                    quoted = udp_frame(ETH0_MAC_S, CLIENT_MAC_S, "198.18.0.100", c, vport, cport, b"r")[14:]
            frame = icmp_error_frame(CLIENT_MAC_S, ETH0_MAC_S, f"198.18.0.{host}", "198.18.0.100",
                                     e["flags"] % 2 and 11 or 3, e["flags"] % 16, quoted[:e["quote"]],
                                     ttl=e["ttl"])
            ifn = "eth0"
        actions = self.d.handle(frame, ifn, self.now)
        assert all(isinstance(a, (Send, Drop, Hold, Absorb)) for a in actions)
        sent = check_sends(actions)
        check_accounting(self.d)
        fwd = [(ifc, ip) for ifc, k, ip in sent if k == "forward"]
        if kind == "c":
            orig = frame[14:]
            hit = self.d.table.lookup((6 if proto == "tcp" else 17, ip4(f"198.18.0.{host}"), cport, VIP,
                                       VPORT[proto]), self.now)
            for a in actions:
                if isinstance(a, Send) and a.kind == "forward":
                    # next hop on eth1 is the flow's real server
                    assert hit is not None and a.frame[0:6] == RIPS[hit[0].daddr]
            for ifc, ip in fwd:
                assert ifc == "eth1"
                if self.mode == "tun":
                    assert ip[9] == 4 and ip[12:16] == DIP and ip[16:20] == hit[0].daddr
                    inner = ip[20:]
                    # outer copies the inner TOS, TTL and DF (RFC 2003 / IPVS)
                    assert ip[1] == inner[1] and ip[8] == inner[8]
                    assert be16(ip, 6) & 0x4000 == be16(inner, 6) & 0x4000
                    ip = inner
                if self.mode == "dr":
                    assert ip == orig, "DR must leave the IP datagram untouched"
                else:
                    assert ip[8] == orig[8] - 1, "routed modes decrement the TTL by one"
                if self.mode == "tun":
                    assert ip[:8] + ip[9:10] + ip[12:] == orig[:8] + orig[9:10] + orig[12:], \
                        "TUN must carry the client's datagram unchanged but for TTL"
                self.last_in[i] = ip
                self.check_inbound(i, ip)
            if self.check_view:
                assert len(fwd) == 1, (kind, actions)
        elif kind == "s":
            for ifc, ip in fwd:
                assert ifc == "eth0"
                assert ip[8] == frame[14 + 8] - 1, "routed modes decrement the TTL by one"
                self.last_out[i] = ip
            if self.check_view:
                assert len(fwd) == 1, ("the RS reply was not forwarded", actions)
                assert [a.frame[0:6] for a in actions if isinstance(a, Send)] == [CLIENT_MAC]
                src, sport, dst, dport = tuple_of(fwd[0][1])
                assert (src, sport) == (VIP, VPORT[proto]), "reply does not come from VIP:vport"
                assert (dst, dport) == (ip4(f"198.18.0.{host}"), cport), "reply not sent to client:cport"
        elif kind == "icmp_s" and self.check_view and fwd:
            ifc, ip = fwd[0]
            assert ifc == "eth0" and ip[12:16] == VIP and ip[16:20] == ip4(f"198.18.0.{host}")
            inner = l4_of(ip)[8:]
            src, sport, dst, dport = tuple_of(inner)
            assert (src, sport, dst, dport) == (ip4(f"198.18.0.{host}"), cport, VIP, VPORT[proto])

    def check_inbound(self, i, ip) -> None:
        host, cport, proto = self.flows[i]
        c = ip4(f"198.18.0.{host}")
        src, sport, dst, dport = tuple_of(ip)
        if self.mode == "nat":
            assert (src, sport) == (c, cport) and dst in RIPS and dport == RPORT[(proto, "nat")]
        elif self.mode == "fullnat":
            assert src == LIP and dst in RIPS and dport == RPORT[(proto, "fullnat")]
        else:
            assert (src, sport, dst, dport) == (c, cport, VIP, VPORT[proto])
        if self.mode == "fullnat" and proto == "tcp":
            toas = [data for k, data in tcp_option_walk(l4_of(ip)) if k == TOA_KIND]
            assert len(toas) <= 1, "more than one TOA option reaches the RS"
            for data in toas:
                assert data == struct.pack("!H", cport) + c, "a TOA the RS reads does not carry the client"


@pytest.mark.parametrize("mode", MODES)
@FAST
@given(flows=flows_st, evs=events(st.sampled_from([64, 64, 64, 2, 1]), st.one_of(small_payloads, big_payloads)))
def test_every_sent_frame_has_valid_checksums(mode, flows, evs):
    drv = FlowDriver(mode, flows, check_view=False)
    for e in evs:
        drv.step(e)


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
@FAST
@given(flows=flows_st, evs=events(st.just(64), small_payloads))
def test_nat_reply_restores_client_view(mode, flows, evs):
    drv = FlowDriver(mode, flows, check_view=True)
    for e in evs:
        drv.step(e)


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
@settings(max_examples=100, deadline=None)
@given(host=client_hosts, cport=cports, proto=st.sampled_from(["tcp", "udp"]), opts=tcp_opts,
       payload=small_payloads, reply_payload=small_payloads)
def test_handshake_reply_view(mode, host, cport, proto, opts, payload, reply_payload):
    """The plain walk: SYN in, SYN-ACK back, ACK + data in, data back."""
    d = Director(CONFIGS[mode])
    c = f"198.18.0.{host}"
    steps = [("c", SYN, b""), ("s", SYN | ACK, b""), ("c", ACK, payload), ("s", ACK | PSH, reply_payload),
             ("c", FIN | ACK, b""), ("s", FIN | ACK, b"")]
    rs_view = None
    for t, (who, flags, pl) in enumerate(steps):
        if who == "c":
            if proto == "tcp":
                f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, 80, flags, payload=pl, opts=opts)
            else:
                f = udp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, 53, pl)
            sent = check_sends(d.handle(f, "eth0", 10.0 + t))
            assert len(sent) == 1 and sent[0][0] == "eth1"
            view = tuple_of(sent[0][2])
            if mode == "fullnat" and proto == "tcp":
                toas = [x for k, x in tcp_option_walk(l4_of(sent[0][2])) if k == TOA_KIND]
                assert toas in ([], [struct.pack("!H", cport) + ip4(c)]), "TOA missing the client or forged"
                if flags == ACK and len(opts) <= 32:
                    # the ACK completing the handshake carries the client address
                    assert toas, "no TOA in the ACK that completes the handshake"
                    assert d.events["toa_inserted"] == 1
            assert rs_view is None or view == rs_view, "the RS-side tuple changed within one flow"
            rs_view = view
        else:
            src, sport, dst, dport = rs_view
            rs, to = ".".join(map(str, dst)), ".".join(map(str, src))
            if proto == "tcp":
                f = tcp_frame(RIPS[dst], ETH1_MAC_S, rs, to, dport, sport, flags, payload=pl,
                              opts=b"\x02\x04\x05\xb4" if flags & SYN else b"")
            else:
                f = udp_frame(RIPS[dst], ETH1_MAC_S, rs, to, dport, sport, pl)
            actions = d.handle(f, "eth1", 10.0 + t)
            sent = check_sends(actions)
            assert len(sent) == 1 and sent[0][0] == "eth0"
            assert [a.frame[0:6] for a in actions] == [CLIENT_MAC]
            assert tuple_of(sent[0][2]) == (VIP, VPORT[proto], ip4(c), cport)
            if mode == "fullnat" and proto == "tcp" and flags & SYN:
                # the RS's MSS leaves room for the 8 TOA bytes added inbound
                mss = [x for k, x in tcp_option_walk(l4_of(sent[0][2])) if k == 2]
                assert mss == [struct.pack("!H", 1460 - 8)]


# ====================================================================== FULLNAT port allocation

def fullnat_doc() -> dict:
    with open(EXAMPLES / "fullnat.toml", "rb") as fh:
        return tomllib.load(fh)


def small_pool_config(lips: list[str], lo: int, hi: int, n_rs: int = 3):
    doc = copy.deepcopy(fullnat_doc())
    for vs in doc["virtual_server"]:
        vs["local_addresses"] = lips
        vs["local_port_range"] = [lo, hi]
        vs["real_server"] = vs["real_server"][:n_rs]
    return parse_config(doc, "small-pool")


POOLS = {
    "example": CONFIGS["fullnat"],
    "two_lips_4_ports": small_pool_config(["198.19.0.250", "198.19.0.251"], 2000, 2003),
    "one_lip_3_ports": small_pool_config(["198.19.0.250"], 40000, 40002),
}


def live_conns(d: Director, now: float):
    return [c for c in d.table if c.alive and c.expires > now]


@pytest.mark.parametrize("pool", sorted(POOLS))
@settings(max_examples=150, deadline=None)
@given(ops=st.lists(st.tuples(
    st.sampled_from(["syn", "syn", "syn", "rst", "fin", "ack", "wait"]),
    st.integers(2, 6), st.integers(1024, 1040), st.sampled_from(["tcp", "udp"]),
    st.sampled_from([0.0, 0.5, 3.0, 11.0])), min_size=1, max_size=40))
def test_fullnat_local_tuples_never_collide(pool, ops):
    cfg = POOLS[pool]
    d = Director(cfg)
    svc = {s.proto: s for s in d.services}
    slots = {p: (s.port_hi - s.port_lo + 1) * len(s.lips) for p, s in svc.items()}
    now = 100.0
    for op, host, cport, proto, dt in ops:
        now += dt
        pnum = 6 if proto == "tcp" else 17
        if op == "wait":
            d.tick(now)
            continue
        c = f"198.18.0.{host}"
        flags = {"syn": SYN, "rst": RST | ACK, "fin": FIN | ACK, "ack": ACK}[op]
        if proto == "tcp":
            f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, 80, flags)
        else:
            f = udp_frame(CLIENT_MAC_S, ETH0_MAC_S, c, "198.18.0.100", cport, 53, b"q")
        before = d.drops["fullnat_no_local_port"]
        actions = d.handle(f, "eth0", now)
        sent = check_sends(actions)
        refused = d.drops["fullnat_no_local_port"] - before
        assert refused == sum(1 for a in actions if a == Drop("fullnat_no_local_port"))
        assert d.drops["tuple_collision"] == 0, "an allocated (LIP, lport) collided"
        live = live_conns(d, now)
        outs = [c.out_key for c in live]
        assert len(outs) == len(set(outs)), "two live flows share (proto, RIP, rport, LIP, lport)"
        for conn in live:
            assert conn.laddr in svc[conn.proto].lips
            s = svc[conn.proto]
            assert s.port_lo <= conn.lport <= s.port_hi
            assert d.table.lookup(conn.out_key, now) == (conn, 1)
        per_rs = Counter((c.proto, c.daddr) for c in live)
        assert all(n <= slots[p] for (p, _), n in per_rs.items())
        if refused:
            assert any(n == slots[pnum] for (p, _), n in per_rs.items() if p == pnum), \
                "refused although no real server's local pool is exhausted"
        for ifn, kind, ip in sent:
            if ifn == "eth1" and kind == "forward":
                src, sport, dst, dport = tuple_of(ip)
                conn = d.table.lookup((pnum, dst, dport, src, sport), now)
                assert conn is not None and conn[0].caddr == ip4(c) and conn[0].cport == cport


def test_fullnat_fifth_flow_to_one_rs_is_refused():
    cfg = small_pool_config(["198.19.0.250"], 2000, 2003, n_rs=1)
    d = Director(cfg)
    seen = set()
    for k in range(4):
        f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, "198.18.0.10", "198.18.0.100", 50000 + k, 80, SYN)
        sent = check_sends(d.handle(f, "eth0", 1.0))
        assert len(sent) == 1
        src, sport, dst, dport = tuple_of(sent[0][2])
        assert src == LIP and 2000 <= sport <= 2003 and dst == ip4("198.19.0.11") and dport == 8080
        seen.add(sport)
    assert seen == {2000, 2001, 2002, 2003}
    f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, "198.18.0.11", "198.18.0.100", 50000, 80, SYN)
    assert d.handle(f, "eth0", 1.0) == [Drop("fullnat_no_local_port")]
    assert d.drops["fullnat_no_local_port"] == 1
    assert d.drops["tuple_collision"] == 0
    assert len(d.table) == 4
    # the existing flows still work when the pool is exhausted
    f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, "198.18.0.10", "198.18.0.100", 50000, 80, ACK)
    assert len(check_sends(d.handle(f, "eth0", 1.5))) == 1
    # once flows expire their ports can be reused (SYN_RECV lasts 60 s)
    f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, "198.18.0.11", "198.18.0.100", 50000, 80, SYN)
    sent = check_sends(d.handle(f, "eth0", 1000.0))
    assert len(sent) == 1 and 2000 <= tuple_of(sent[0][2])[1] <= 2003


def test_fullnat_pool_per_rs_with_three_servers():
    """Four ports per RS: 12 flows fit across three servers, never more than 4 per RS."""
    cfg = small_pool_config(["198.19.0.250"], 2000, 2003, n_rs=3)
    d = Director(cfg)
    refused = 0
    for k in range(40):
        f = tcp_frame(CLIENT_MAC_S, ETH0_MAC_S, f"198.18.0.{10 + k % 5}", "198.18.0.100", 50000 + k, 80, SYN)
        actions = d.handle(f, "eth0", 1.0)
        if actions == [Drop("fullnat_no_local_port")]:
            refused += 1
        else:
            assert len(check_sends(actions)) == 1
    per_rs = Counter(c.daddr for c in d.table)
    assert all(n <= 4 for n in per_rs.values())
    assert len(d.table) == 12 and sum(per_rs.values()) == 12
    assert refused == d.drops["fullnat_no_local_port"] == 28
    assert d.drops["tuple_collision"] == 0


# ====================================================================== robustness

ifnames = st.sampled_from(["eth0", "eth1", "eth0", "eth1", "wlan9"])
inputs = st.one_of(frames("any"), st.binary(max_size=120))
times = st.floats(min_value=-1e6, max_value=1e9, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(st.tuples(st.sampled_from(["frame", "frame", "frame", "tick"]), inputs, ifnames, times),
                       min_size=1, max_size=12))
def test_any_bytes_give_actions_or_counted_drops(mode, script):
    d = Director(CONFIGS[mode])
    for what, frame, ifn, now in script:
        before = sum(d.drops.values())
        actions = d.tick(now) if what == "tick" else d.handle(frame, ifn, now)
        assert isinstance(actions, list)
        assert all(isinstance(a, (Send, Drop, Hold, Absorb)) for a in actions)
        n_drops = sum(1 for a in actions if isinstance(a, Drop))
        assert sum(d.drops.values()) - before == n_drops
        for a in actions:
            if isinstance(a, Send):
                assert a.interface in ("eth0", "eth1") and isinstance(a.frame, bytes)
                assert a.kind in ("forward", "reply", "resolve")
            elif isinstance(a, Drop):
                assert isinstance(a.reason, str) and d.drops[a.reason] > 0
        check_sends(actions)
        check_accounting(d)
