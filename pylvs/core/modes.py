"""The four LVS forwarding modes as a rule table plus their header rewrites.

What each mode does on the wire is in DESIGN.md; in short (client C, virtual
service V, real server R, FULLNAT local address L):

=========  =====================  =====================  =====  =======
mode       inbound                outbound (reply)       TTL−1  encap
=========  =====================  =====================  =====  =======
nat        C→V  ⇒  C→R            R→C  ⇒  V→C            yes    no
dr         C→V  (MACs only)       (RS answers directly)  no     no
tun        C→V  inside D→R        (RS answers directly)  yes    IPIP
fullnat    C→V  ⇒  L→R            R→L  ⇒  V→C            yes    no
=========  =====================  =====================  =====  =======

"Routed" modes decrement the TTL and answer TTL ≤ 1 with ICMP time exceeded
(RFC 1812 §5.3.1): the director is an IP hop for them.  DR only re-addresses the
Ethernet frame, so the IP packet is left untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pylvs.core.conntable import Conn
from pylvs.core.packet import IP_DF, IPPROTO_IPIP, Packet
from pylvs.core.rewrite import DST, SRC, set_addr, set_port
from pylvs.core.icmp import ipv4_header
from pylvs import native


@dataclass(frozen=True)
class ModeRule:
    routed: bool        # TTL decremented, time-exceeded at TTL ≤ 1
    sees_replies: bool  # replies cross the director: full TCP state tables
    port_mapping: bool  # real port may differ from the virtual port
    snat: bool          # source rewritten to LIP:lport
    encap: bool         # IP-in-IP to the real server


RULES: dict[str, ModeRule] = {
    "nat": ModeRule(routed=True, sees_replies=True, port_mapping=True, snat=False, encap=False),
    "dr": ModeRule(routed=False, sees_replies=False, port_mapping=False, snat=False, encap=False),
    "tun": ModeRule(routed=True, sees_replies=False, port_mapping=False, snat=False, encap=True),
    "fullnat": ModeRule(routed=True, sees_replies=True, port_mapping=True, snat=True, encap=False),
}

IPIP_OVERHEAD = 20


def xlate_in(c: Conn, rule: ModeRule, buf: bytearray, l3: int, l4: int, proto: int, end: int | None = None) -> None:
    """Client → server rewrite of the IP/L4 headers at ``l3``/``l4`` (NAT, FULLNAT)."""
    if rule.snat:
        set_addr(buf, l3, l4, proto, SRC, c.laddr, end)
        set_port(buf, l4, proto, 0, c.lport, end)
    if rule.port_mapping:
        set_addr(buf, l3, l4, proto, DST, c.daddr, end)
        set_port(buf, l4, proto, 2, c.dport, end)


def xlate_out(c: Conn, rule: ModeRule, buf: bytearray, l3: int, l4: int, proto: int, end: int | None = None) -> None:
    """Server → client rewrite: the reply must look as if the VIP sent it."""
    set_addr(buf, l3, l4, proto, SRC, c.vaddr, end)
    set_port(buf, l4, proto, 0, c.vport, end)
    if rule.snat:
        set_addr(buf, l3, l4, proto, DST, c.caddr, end)
        set_port(buf, l4, proto, 2, c.cport, end)


def encap_ipip(p: Packet, outer_src: bytes, outer_dst: bytes) -> None:
    """Prepend an outer IPv4 header ``outer_src → outer_dst``, protocol 4 (RFC 2003).

    As IPVS's tunnel transmitter does, the outer header copies the inner TOS,
    TTL and DF bit (so PMTU discovery still works end to end); its ID is the
    inner ID, which keeps the output deterministic.
    """
    buf = p.buf
    l3 = p.l3
    tos = buf[l3 + 1]
    ttl = buf[l3 + 8]
    ident = struct.unpack_from("!H", buf, l3 + 4)[0]
    df = p.frag & IP_DF
    outer = ipv4_header(outer_src, outer_dst, IPPROTO_IPIP, p.ip_len, ttl=ttl, tos=tos, ident=ident, frag=df)
    buf[l3:l3] = outer
    p.ip_len += IPIP_OVERHEAD
    p.l4 = l3 + 20


def fragment(buf: bytearray, l3: int, mtu: int) -> list[bytearray]:
    """Split an IPv4 datagram (DF clear) into fragments that fit ``mtu`` (RFC 791).

    Header options are copied into every fragment (good enough here: the
    director never adds options, and copying all is permitted to receivers).
    """
    ihl = (buf[l3] & 0x0F) * 4
    total = struct.unpack_from("!H", buf, l3 + 2)[0]
    hdr = bytes(buf[l3:l3 + ihl])
    payload = bytes(buf[l3 + ihl:l3 + total])
    step = ((mtu - ihl) // 8) * 8
    base_off = struct.unpack_from("!H", buf, l3 + 6)[0]
    out = []
    for start in range(0, len(payload), step):
        chunk = payload[start:start + step]
        more = start + step < len(payload)
        h = bytearray(hdr)
        frag = (base_off & 0xE000) | ((base_off & 0x1FFF) + start // 8)
        if more:
            frag |= 0x2000
        struct.pack_into("!H", h, 2, ihl + len(chunk))
        struct.pack_into("!H", h, 6, frag)
        h[10:12] = b"\x00\x00"
        struct.pack_into("!H", h, 10, native.checksum(h))
        out.append(bytearray(buf[:l3]) + h + chunk)
    return out


__all__ = ["RULES", "ModeRule", "xlate_in", "xlate_out", "encap_ipip", "fragment", "IPIP_OVERHEAD"]
