"""ARP (RFC 826): answering for our addresses, asking for next hops.

Frames are built with dpkt (the slow path); parsing is checked by hand first
because dpkt accepts short or odd ARP packets without complaint.
"""

from __future__ import annotations

import struct

import dpkt

from pylvs.core.packet import BROADCAST, ETH_HLEN, ETH_P_ARP

ARP_REQUEST = 1
ARP_REPLY = 2


class Arp:
    __slots__ = ("op", "sha", "spa", "tha", "tpa")


def parse_arp(frame: bytes | bytearray) -> Arp | str:
    """Ethernet/IPv4 ARP only (htype 1, ptype 0x0800, hlen 6, plen 4)."""
    if len(frame) < ETH_HLEN + 28:
        return "arp_truncated"
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, ETH_HLEN)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return "arp_unsupported"
    if op not in (ARP_REQUEST, ARP_REPLY):
        return "arp_unsupported"
    a = Arp()
    a.op = op
    o = ETH_HLEN + 8
    a.sha = bytes(frame[o:o + 6])
    a.spa = bytes(frame[o + 6:o + 10])
    a.tha = bytes(frame[o + 10:o + 16])
    a.tpa = bytes(frame[o + 16:o + 20])
    return a


def _frame(dst: bytes, src: bytes, arp: dpkt.arp.ARP) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=src, type=ETH_P_ARP, data=arp))


def reply_frame(req: Arp, eth_dst: bytes, mac: bytes) -> bytes:
    """Our answer to ``req``: ``req.tpa`` is at ``mac``; unicast to the asker."""
    arp = dpkt.arp.ARP(op=ARP_REPLY, sha=mac, spa=req.tpa, tha=req.sha, tpa=req.spa)
    return _frame(eth_dst, mac, arp)


def request_frame(mac: bytes, spa: bytes, tpa: bytes) -> bytes:
    """Who has ``tpa``? Tell ``spa`` (broadcast)."""
    arp = dpkt.arp.ARP(op=ARP_REQUEST, sha=mac, spa=spa, tha=b"\x00" * 6, tpa=tpa)
    return _frame(BROADCAST, mac, arp)
