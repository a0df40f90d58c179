"""Pure-Python twins of native/offload.c: the virtio-net header read into a descriptor's fields and written
back from them, and the software segmentation of a GSO super-frame (see native/pylvs_native.h for the
contract; tests/property/test_offload_diff.py holds the two together)."""

from __future__ import annotations

import struct

from pylvs._pure.checksum import csum_fold, csum_partial
from pylvs._pure.flowtable import CSUM_PARTIAL, CSUM_VALID, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_UDP_L4

VNET_HDR = struct.Struct("=BBHHHH")  # struct virtio_net_hdr, host byte order (legacy virtio)
VNET_HDR_LEN = VNET_HDR.size
VNET_F_NEEDS_CSUM = 1
VNET_F_DATA_VALID = 2
_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")


def _l4_layout(f, ln: int):
    """(l4 offset, checksum field offset within L4, protocol) of a standard IPv4 TCP/UDP frame, or None."""
    if ln < 34 or f[12] != 0x08 or f[13] != 0x00 or f[14] >> 4 != 4 or f[14] & 0x0F < 5:
        return None
    l4 = 14 + (f[14] & 0x0F) * 4
    proto = f[23]
    co = 16 if proto == 6 else 6 if proto == 17 else None
    if co is None or l4 + co + 2 > ln:
        return None
    return l4, co, proto


def vnet_to_desc(hdr, frame):
    """``(flags, gso_type, gso_size)`` for a received frame, or None when it cannot be taken."""
    if len(hdr) != VNET_HDR_LEN:
        raise ValueError("a virtio-net header is 10 bytes")
    vflags, gso_type, _hdr_len, gso_size, start, offset = VNET_HDR.unpack(bytes(hdr))
    ln = len(frame)
    flags = CSUM_VALID if vflags & VNET_F_DATA_VALID else 0
    if vflags & VNET_F_NEEDS_CSUM:
        lay = _l4_layout(frame, ln)
        if lay is not None and start == lay[0] and offset == lay[1]:
            flags |= CSUM_PARTIAL
        else:  # elsewhere than the fast path looks: finished here, as skb_checksum_help does
            o = start + offset
            if gso_type != GSO_NONE or start > ln or o + 2 > ln:
                return None
            _u16.pack_into(frame, o, csum_fold(csum_partial(bytes(frame[start:ln]))))
    if gso_type != GSO_NONE:
        if not flags & CSUM_PARTIAL or gso_size == 0:
            return None
        return flags, gso_type, gso_size
    return flags, 0, 0


def desc_to_vnet(flags: int, gso_type: int, gso_size: int, frame) -> bytes:
    """The 10-byte header to send ``frame`` with."""
    lay = _l4_layout(frame, len(frame))
    if not flags & CSUM_PARTIAL or lay is None:
        return bytes(VNET_HDR_LEN)
    l4, co, proto = lay
    if gso_type == GSO_NONE:
        return VNET_HDR.pack(VNET_F_NEEDS_CSUM, 0, 0, 0, l4, co)
    hl = l4 + ((frame[l4 + 12] >> 4) * 4 if proto == 6 else 8)
    return VNET_HDR.pack(VNET_F_NEEDS_CSUM, gso_type, min(hl, len(frame)), gso_size, l4, co)


def gso_segment(frame, gso_type: int, gso_size: int):
    """The wire-sized frames a GSO super-frame stands for, checksums whole (as tcp_gso_segment /
    __udp_gso_segment cut them), or None (malformed, UFO, IPv6)."""
    f = bytes(frame)
    lay = _l4_layout(f, len(f))
    g = gso_type & ~GSO_ECN & 0xFF
    if lay is None or not gso_size:
        return None
    l4, co, proto = lay
    if not ((g == GSO_TCPV4 and proto == 6) or (g == GSO_UDP_L4 and proto == 17)):
        return None
    ihl = l4 - 14
    total = _u16.unpack_from(f, 16)[0]
    if total < ihl or 14 + total > len(f) or _u16.unpack_from(f, 20)[0] & 0x3FFF:
        return None
    hl = (f[l4 + 12] >> 4) * 4 if proto == 6 else 8
    if hl < (20 if proto == 6 else 8) or l4 + hl > 14 + total:
        return None
    hdrs = l4 + hl
    payload = 14 + total - hdrs
    nseg = -(-payload // gso_size) if payload else 1
    ip_id = _u16.unpack_from(f, 18)[0]
    seq = _u32.unpack_from(f, l4 + 4)[0] if proto == 6 else 0
    tflags = f[l4 + 13] if proto == 6 else 0
    out = []
    for i in range(nseg):
        pl = min(gso_size, payload - i * gso_size)
        s = bytearray(f[:hdrs] + f[hdrs + i * gso_size:hdrs + i * gso_size + pl])
        _u16.pack_into(s, 16, ihl + hl + pl)
        _u16.pack_into(s, 18, (ip_id + i) & 0xFFFF)  # inet_gso_segment numbers the segments
        s[24:26] = b"\0\0"
        _u16.pack_into(s, 24, csum_fold(csum_partial(bytes(s[14:14 + ihl]))))
        if proto == 6:
            _u32.pack_into(s, l4 + 4, (seq + i * gso_size) & 0xFFFFFFFF)
            fl = tflags
            if i + 1 < nseg:
                fl &= ~0x09  # FIN, PSH on the last segment only
            if i > 0:
                fl &= ~0x80  # CWR on the first only
            s[l4 + 13] = fl
        else:
            _u16.pack_into(s, l4 + 4, hl + pl)
        s[l4 + co:l4 + co + 2] = b"\0\0"
        pseudo = csum_partial(bytes(s[26:34])) + proto + hl + pl
        c = csum_fold(csum_partial(bytes(s[l4:l4 + hl + pl]), pseudo))
        if proto == 17 and c == 0:
            c = 0xFFFF  # RFC 768
        _u16.pack_into(s, l4 + co, c)
        out.append(s)
    return out
