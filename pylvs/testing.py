"""Frame builders and Hypothesis strategies for driving the pipeline.

Reusable by anyone fuzzing pylvs (``from pylvs.testing import frames``): the
builders make well-formed Ethernet/IPv4 frames with dpkt (checksums computed by
dpkt), the strategies make valid, slightly broken and random frames.  Importing
this module needs ``hypothesis`` only for the strategies.
"""

from __future__ import annotations

import ipaddress

import dpkt

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806


def mac(s: str) -> bytes:
    return bytes.fromhex(s.replace(":", ""))


def ip4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def _eth(src_mac: str | bytes, dst_mac: str | bytes, etype: int, payload) -> bytes:
    s = src_mac if isinstance(src_mac, bytes) else mac(src_mac)
    d = dst_mac if isinstance(dst_mac, bytes) else mac(dst_mac)
    return bytes(dpkt.ethernet.Ethernet(src=s, dst=d, type=etype, data=payload))


def _ip(src: str, dst: str, proto: int, l4, ttl: int, ident: int, df: bool, tos: int = 0) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=proto, ttl=ttl, id=ident, tos=tos, data=l4)
    ip.df = 1 if df else 0
    return ip


def tcp_frame(src_mac, dst_mac, src: str, dst: str, sport: int, dport: int, flags: int, *,
              seq: int = 1000, ack: int = 0, payload: bytes = b"", opts: bytes = b"",
              win: int = 64240, ttl: int = 64, ident: int = 1, df: bool = True, tos: int = 0) -> bytes:
    """An Ethernet/IPv4/TCP frame.  ``opts`` must be padded to a multiple of 4."""
    assert len(opts) % 4 == 0, "TCP options must be padded to 32 bits"
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win, opts=opts, data=payload)
    t.off = 5 + len(opts) // 4
    return _eth(src_mac, dst_mac, ETH_P_IP, _ip(src, dst, dpkt.ip.IP_PROTO_TCP, t, ttl, ident, df, tos))


def udp_frame(src_mac, dst_mac, src: str, dst: str, sport: int, dport: int, payload: bytes = b"", *,
              ttl: int = 64, ident: int = 1, df: bool = False) -> bytes:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    u.ulen = 8 + len(payload)
    return _eth(src_mac, dst_mac, ETH_P_IP, _ip(src, dst, dpkt.ip.IP_PROTO_UDP, u, ttl, ident, df))


def icmp_frame(src_mac, dst_mac, src: str, dst: str, icmp_type: int, code: int, body: bytes, *,
               ttl: int = 64, ident: int = 1) -> bytes:
    """ICMP with ``body`` after the 4-byte type/code/checksum (i.e. from the
    "rest of header" field on)."""
    ic = dpkt.icmp.ICMP(type=icmp_type, code=code)
    ic.data = body
    ic.sum = 0
    raw = bytes(ic)  # dpkt fills the checksum
    return _eth(src_mac, dst_mac, ETH_P_IP, _ip(src, dst, dpkt.ip.IP_PROTO_ICMP, raw, ttl, ident, False))


def icmp_error_frame(src_mac, dst_mac, src: str, dst: str, icmp_type: int, code: int, quoted: bytes,
                     rest: int = 0, **kw) -> bytes:
    """An ICMP error quoting ``quoted`` (an IP datagram, usually truncated)."""
    return icmp_frame(src_mac, dst_mac, src, dst, icmp_type, code, rest.to_bytes(4, "big") + quoted, **kw)


def arp_frame(src_mac, dst_mac, op: int, sha, spa: str, tha, tpa: str) -> bytes:
    sha = sha if isinstance(sha, bytes) else mac(sha)
    tha = tha if isinstance(tha, bytes) else mac(tha)
    a = dpkt.arp.ARP(op=op, sha=sha, spa=ip4(spa), tha=tha, tpa=ip4(tpa))
    return _eth(src_mac, dst_mac, ETH_P_ARP, a)


def ip_payload(frame: bytes) -> bytes:
    """The IP datagram inside an Ethernet frame (for quoting in ICMP errors)."""
    return frame[14:]


# ---------------------------------------------------------------- strategies

def _strategies():
    from hypothesis import strategies as st

    macs = st.sampled_from(["02:00:00:00:00:10", "02:00:00:00:01:01", "02:00:00:00:01:02",
                            "02:00:00:00:02:11", "ff:ff:ff:ff:ff:ff"]) | st.binary(min_size=6, max_size=6)
    addrs = st.sampled_from(["198.18.0.10", "198.18.0.100", "198.19.0.11", "198.19.0.12", "198.19.0.250",
                             "198.18.0.1", "198.19.0.1"]) | st.ip_addresses(v=4).map(str)
    ports = st.sampled_from([80, 53, 8080, 5353, 40000]) | st.integers(0, 65535)
    flags = st.integers(0, 0xFF)
    payloads = st.binary(max_size=64)
    opts = st.lists(st.sampled_from([b"\x01", b"\x02\x04\x05\xb4", b"\x03\x03\x07", b"\x04\x02",
                                     b"\xfe\x08\x1f\x90\xc6\x12\x00\x0a", b"\x08\x0a" + b"\x00" * 8]),
                    max_size=4).map(lambda xs: b"".join(xs)).map(lambda b: (b + b"\x00" * (-len(b) % 4))[:40])

    tcp = st.builds(lambda sm, dm, s, d, sp, dp, f, pl, o, ttl: tcp_frame(sm, dm, s, d, sp, dp, f, payload=pl,
                                                                      opts=o, ttl=ttl),
                    macs, macs, addrs, addrs, ports, ports, flags, payloads, opts, st.integers(0, 255))
    udp = st.builds(lambda sm, dm, s, d, sp, dp, pl, ttl: udp_frame(sm, dm, s, d, sp, dp, pl, ttl=ttl),
                    macs, macs, addrs, addrs, ports, ports, payloads, st.integers(0, 255))
    icmp = st.builds(lambda sm, dm, s, d, t, c, b: icmp_frame(sm, dm, s, d, t, c, b),
                     macs, macs, addrs, addrs, st.sampled_from([0, 3, 4, 5, 8, 11, 12, 13]) | st.integers(0, 255),
                     st.integers(0, 15), st.binary(max_size=80))
    arp = st.builds(lambda sm, dm, op, sha, spa, tpa: arp_frame(sm, dm, op, sha, spa, "00:00:00:00:00:00", tpa),
                    macs, macs, st.integers(0, 3), macs, addrs, addrs)
    valid = st.one_of(tcp, udp, icmp, arp)

    def mutate(data: st.DataObject, frame: bytes) -> bytes:
        b = bytearray(frame)
        for _ in range(data.draw(st.integers(1, 4))):
            if not b:
                break
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        if data.draw(st.booleans()):
            b = b[: data.draw(st.integers(0, len(b)))]
        return bytes(b)

    mutated = st.builds(lambda d, f: mutate(d, f), st.data(), valid)
    garbage = st.binary(max_size=200)
    return {"tcp": tcp, "udp": udp, "icmp": icmp, "arp": arp, "valid": valid, "mutated": mutated,
            "garbage": garbage, "any": st.one_of(valid, mutated, garbage)}


def frames(kind: str = "any"):
    """A Hypothesis strategy of frames: "tcp", "udp", "icmp", "arp", "valid",
    "mutated" (valid frames with bytes changed or cut), "garbage", or "any"."""
    return _strategies()[kind]


__all__ = ["tcp_frame", "udp_frame", "icmp_frame", "icmp_error_frame", "arp_frame", "frames", "mac", "ip4",
           "ip_payload"]
