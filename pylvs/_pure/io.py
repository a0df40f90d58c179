"""Pure-Python twins of the batched AF_PACKET I/O in native/io.c: one ``recvmsg_into`` / ``write`` per
frame instead of one ``recvmmsg`` / ``sendmmsg`` per batch; the same acceptance rules, descriptors and
counters (see pylvs/io/afpacket.py for why each rule exists)."""

from __future__ import annotations

import os
import socket
import struct

from pylvs._pure.flowtable import CSUM_PARTIAL, CSUM_VALID, DESC
from pylvs._pure.offload import VNET_HDR_LEN, desc_to_vnet, vnet_to_desc

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_CSUM_VALID = 1 << 7
_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_ANC_SPACE = socket.CMSG_SPACE(_AUX.size)
(RX_FRAMES, RX_BYTES, RX_OUTGOING, RX_OVERSIZE, RX_VLAN, RX_CSUM_PARTIAL, RX_ERRORS, RX_GSO,
 RX_GSO_BAD) = range(9)
RX_COUNTERS = ("rx_frames", "rx_bytes", "rx_outgoing_ignored", "rx_oversize", "rx_vlan_dropped",
               "rx_csum_partial", "rx_errors", "rx_gso", "rx_gso_bad")
TX_COUNTERS = ("tx_frames", "tx_bytes", "tx_errors", "tx_gso")
NTX = len(TX_COUNTERS)
MAX_BATCH = 64


def rx_afpacket(fd: int, buf, desc, max_frames: int, stride: int, headroom: int, room: int, vnet: bool,
                counters) -> int:
    if len(desc) < min(max_frames, MAX_BATCH) * DESC.size:
        raise ValueError("desc too small or misaligned")
    if len(counters) < len(RX_COUNTERS):
        raise ValueError(f"counters must be {len(RX_COUNTERS)} aligned uint64")
    if stride == 0 or headroom + room > stride:
        raise ValueError("headroom + room must fit in stride")
    max_frames = min(max_frames, MAX_BATCH, len(buf) // stride)
    view = memoryview(buf)
    sock = socket.socket(fileno=fd)
    n = 0
    try:
        for i in range(max_frames):
            at = i * stride + headroom
            hdr = bytearray(VNET_HDR_LEN)
            bufs = [hdr, view[at:at + room]] if vnet else [view[at:at + room]]
            try:
                got, anc, flags, addr = sock.recvmsg_into(bufs, _ANC_SPACE, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                counters[RX_ERRORS] += 1
                break
            if addr[2] == PACKET_OUTGOING:
                counters[RX_OUTGOING] += 1
                continue
            hl = VNET_HDR_LEN if vnet else 0
            if flags & socket.MSG_TRUNC or got < hl or got - hl > room:
                counters[RX_OVERSIZE] += 1
                continue
            got -= hl
            status = 0
            for level, typ, cdata in anc:
                if level == SOL_PACKET and typ == PACKET_AUXDATA and len(cdata) >= _AUX.size:
                    status = _AUX.unpack_from(cdata)[0]
            if status & TP_STATUS_VLAN_VALID:
                counters[RX_VLAN] += 1
                continue
            if vnet:
                got_desc = vnet_to_desc(hdr, view[at:at + got])
                if got_desc is None:
                    counters[RX_GSO_BAD] += 1
                    continue
                dflags, gso_type, gso_size = got_desc
            else:
                dflags = ((CSUM_PARTIAL if status & TP_STATUS_CSUMNOTREADY else 0)
                          | (CSUM_VALID if status & TP_STATUS_CSUM_VALID else 0))
                gso_type = gso_size = 0
            counters[RX_CSUM_PARTIAL] += bool(dflags & CSUM_PARTIAL)
            counters[RX_GSO] += bool(gso_type)
            counters[RX_FRAMES] += 1
            counters[RX_BYTES] += got
            DESC.pack_into(desc, n * DESC.size, at, got, -1, 0, gso_size, gso_type, dflags)
            n += 1
    finally:
        sock.detach()  # the fd belongs to the port
    return n


def rx_tap(fd: int, buf, desc, max_frames: int, stride: int, headroom: int, room: int, vnet: bool,
           counters) -> int:
    """One readv() per frame from a TAP device (IFF_VNET_HDR when ``vnet``), into consecutive slots."""
    if len(desc) < min(max_frames, MAX_BATCH) * DESC.size:
        raise ValueError("desc too small or misaligned")
    if len(counters) < len(RX_COUNTERS):
        raise ValueError(f"counters must be {len(RX_COUNTERS)} aligned uint64")
    if stride == 0 or headroom + room > stride:
        raise ValueError("headroom + room must fit in stride")
    max_frames = min(max_frames, MAX_BATCH, len(buf) // stride)
    view = memoryview(buf)
    hl = VNET_HDR_LEN if vnet else 0
    n = 0
    for _ in range(max_frames):
        at = n * stride + headroom
        hdr = bytearray(VNET_HDR_LEN)
        try:
            got = os.readv(fd, [hdr, view[at:at + room]] if vnet else [view[at:at + room]])
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            counters[RX_ERRORS] += 1
            break
        if got < hl or got - hl >= room:  # filled the slot: may have been cut short
            counters[RX_OVERSIZE] += 1
            continue
        got -= hl
        if vnet:
            got_desc = vnet_to_desc(hdr, view[at:at + got])
            if got_desc is None:
                counters[RX_GSO_BAD] += 1
                continue
            dflags, gso_type, gso_size = got_desc
        else:
            dflags = gso_type = gso_size = 0
        counters[RX_CSUM_PARTIAL] += bool(dflags & CSUM_PARTIAL)
        counters[RX_GSO] += bool(gso_type)
        counters[RX_FRAMES] += 1
        counters[RX_BYTES] += got
        DESC.pack_into(desc, n * DESC.size, at, got, -1, 0, gso_size, gso_type, dflags)
        n += 1
    return n


def tx_run(fds, vnet, buf, desc, start: int, n: int, counters) -> int:
    nfds = len(fds)
    if len(desc) < n * DESC.size or start > n:
        raise ValueError("desc holds fewer than n descriptors, or a buffer is misaligned")
    if len(vnet) < nfds:
        raise ValueError("vnet needs one byte per fd")
    if nfds == 0 or len(counters) < NTX * nfds:
        raise ValueError(f"counters must be {NTX} aligned uint64 per fd")
    view = memoryview(buf)
    i = start
    while i < n:
        off, ln, eg, _, gso_size, gso_type, flags = DESC.unpack_from(desc, i * DESC.size)
        if eg < 0:
            break
        if eg >= nfds or fds[eg] < 0:
            counters[NTX * (eg if eg < nfds else 0) + 2] += 1
            i += 1
            continue
        frame = view[off:off + ln] if off <= len(view) and ln <= len(view) - off else b""
        hdr = desc_to_vnet(flags, gso_type, gso_size, frame) if vnet[eg] else b""
        try:
            os.writev(fds[eg], [hdr, frame] if hdr else [frame])
            counters[NTX * eg] += 1
            counters[NTX * eg + 1] += len(frame)
            counters[NTX * eg + 3] += bool(hdr and hdr[1])
        except OSError:
            counters[NTX * eg + 2] += 1
        i += 1
    return i


def send_frames(fd: int, frames, vnet: bool = False) -> tuple[int, int, int]:
    """Send each frame with one write() (behind an all-zero virtio-net header when ``vnet``):
    (sent, bytes, errors), failures counted, never raised."""
    sent = nbytes = errors = 0
    zero = bytes(VNET_HDR_LEN)
    for f in frames:
        try:
            os.writev(fd, [zero, f] if vnet else [f])
        except OSError:
            errors += 1
            continue
        sent += 1
        nbytes += len(f)
    return sent, nbytes, errors
