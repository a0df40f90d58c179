"""Pure-Python twins of the batched AF_PACKET I/O in native/io.c: one ``recvmsg_into`` / ``write`` per
frame instead of one ``recvmmsg`` / ``sendmmsg`` per batch; the same acceptance rules, descriptors and
counters (see pylvs/io/afpacket.py for why each rule exists)."""

from __future__ import annotations

import os
import socket
import struct

from pylvs._pure.flowtable import DESC, IN_CSUM_PARTIAL

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_ANC_SPACE = socket.CMSG_SPACE(_AUX.size)
(RX_FRAMES, RX_BYTES, RX_OUTGOING, RX_OVERSIZE, RX_VLAN, CSUM_COMPLETED, RX_ERRORS) = range(7)
RX_COUNTERS = ("rx_frames", "rx_bytes", "rx_outgoing_ignored", "rx_oversize", "rx_vlan_dropped",
               "csum_completed", "rx_errors")
TX_COUNTERS = ("tx_frames", "tx_bytes", "tx_errors")
MAX_BATCH = 64


def rx_afpacket(fd: int, buf, desc, max_frames: int, stride: int, headroom: int, room: int, counters) -> int:
    if len(desc) < min(max_frames, MAX_BATCH) * DESC.size:
        raise ValueError("desc too small or misaligned")
    if len(counters) < 7:
        raise ValueError("counters must be 7 aligned uint64")
    if stride == 0 or headroom + room > stride:
        raise ValueError("headroom + room must fit in stride")
    max_frames = min(max_frames, MAX_BATCH, len(buf) // stride)
    view = memoryview(buf)
    sock = socket.socket(fileno=fd)
    n = 0
    try:
        for i in range(max_frames):
            at = i * stride + headroom
            try:
                got, anc, flags, addr = sock.recvmsg_into([view[at:at + room]], _ANC_SPACE, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                counters[RX_ERRORS] += 1
                break
            if addr[2] == PACKET_OUTGOING:
                counters[RX_OUTGOING] += 1
                continue
            if flags & socket.MSG_TRUNC or got > room:
                counters[RX_OVERSIZE] += 1
                continue
            status = 0
            for level, typ, cdata in anc:
                if level == SOL_PACKET and typ == PACKET_AUXDATA and len(cdata) >= _AUX.size:
                    status = _AUX.unpack_from(cdata)[0]
            if status & TP_STATUS_VLAN_VALID:
                counters[RX_VLAN] += 1
                continue
            partial = bool(status & TP_STATUS_CSUMNOTREADY)
            counters[CSUM_COMPLETED] += partial
            counters[RX_FRAMES] += 1
            counters[RX_BYTES] += got
            DESC.pack_into(desc, n * DESC.size, at, got, -1, IN_CSUM_PARTIAL if partial else 0)
            n += 1
    finally:
        sock.detach()  # the fd belongs to the port
    return n


def tx_run(fds, buf, desc, start: int, n: int, counters) -> int:
    nfds = len(fds)
    if len(desc) < n * DESC.size or start > n:
        raise ValueError("desc holds fewer than n descriptors, or a buffer is misaligned")
    if nfds == 0 or len(counters) < 3 * nfds:
        raise ValueError("counters must be 3 aligned uint64 per fd")
    view = memoryview(buf)
    i = start
    while i < n:
        off, ln, eg, _ = DESC.unpack_from(desc, i * DESC.size)
        if eg < 0:
            break
        if eg >= nfds or fds[eg] < 0:
            counters[3 * (eg if eg < nfds else 0) + 2] += 1
            i += 1
            continue
        frame = view[off:off + ln] if off <= len(view) and ln <= len(view) - off else b""
        try:
            os.write(fds[eg], frame)
            counters[3 * eg] += 1
            counters[3 * eg + 1] += len(frame)
        except OSError:
            counters[3 * eg + 2] += 1
        i += 1
    return i


def send_frames(fd: int, frames) -> tuple[int, int, int]:
    """Send each frame with one write(): (sent, bytes, errors), failures counted, never raised."""
    sent = nbytes = errors = 0
    for f in frames:
        try:
            os.write(fd, f)
        except OSError:
            errors += 1
            continue
        sent += 1
        nbytes += len(f)
    return sent, nbytes, errors
