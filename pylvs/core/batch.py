"""A batch of frames in one buffer, the shape :meth:`Director.handle_batch` and the fast path take.

Fixed slots of ``stride`` bytes; each frame starts ``HEADROOM`` bytes into its slot, so the fast path can
grow it to the left (TUN adds a 20-byte outer header in place).  The descriptors are one ``bytearray`` of
``DESC`` records (offset, length, verdict, reason, GSO size and type, checksum flags): no Python object per
packet crosses into the fast path.  A port that takes GSO super-frames (virtio-net headers) needs slots of
64 KB and more: :data:`GSO_ROOM`.
"""

from __future__ import annotations

from typing import Iterator

from pylvs import native
# The descriptor layout and its checksum flag (the frame's TCP/UDP checksum is only partial: checksum
# offload, TP_STATUS_CSUMNOTREADY or VIRTIO_NET_HDR_F_NEEDS_CSUM), as native/pylvs_native.h defines them.
from pylvs._pure.flowtable import CSUM_PARTIAL, DESC

HEADROOM = 64
#: room for the largest GSO super-frame: a 64 KB IPv4 datagram, its Ethernet header, one VLAN tag
GSO_ROOM = 65535 + 14 + 4


class Batch:
    def __init__(self, size: int = 64, frame_room: int = 2048) -> None:
        self.size = size
        self.frame_room = frame_room
        self.stride = -(-(HEADROOM + frame_room) // 64) * 64
        self.buf = bytearray(size * self.stride)
        self.desc = bytearray(size * DESC.size)
        self.view = memoryview(self.buf)
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def room(self) -> memoryview:
        """Writable space for the next frame (``frame_room`` bytes); :meth:`commit` its length after."""
        at = self.n * self.stride + HEADROOM
        return self.view[at:at + self.frame_room]

    def commit(self, length: int, flags: int = 0, gso_type: int = 0, gso_size: int = 0) -> None:
        DESC.pack_into(self.desc, self.n * DESC.size, self.n * self.stride + HEADROOM, length, -1, 0, gso_size,
                       gso_type, flags)
        self.n += 1

    def add(self, frame: bytes | bytearray) -> None:
        if self.n >= self.size or len(frame) > self.frame_room:
            raise ValueError("batch full or frame too long")
        self.room()[: len(frame)] = frame
        self.commit(len(frame))

    def frames(self) -> list[bytearray]:
        """Copies of the received frames as they would be on a wire, partial checksums completed and GSO
        super-frames cut into segments (for callers that want objects)."""
        out = []
        for i in range(self.n):
            out += wire_frames(self.view, self.desc, i)[0]
        return out

    def results(self) -> Iterator[tuple[int, int, memoryview]]:
        """``(index, verdict, frame)`` after processing: verdict ≥ 0 is the egress interface index."""
        for i in range(self.n):
            off, ln, verdict = DESC.unpack_from(self.desc, i * DESC.size)[:3]
            yield i, verdict, self.view[off:off + ln]


def wire_frames(buf, desc, i: int) -> tuple[list[bytearray], str | None]:
    """Descriptor ``i``'s frame as wire-sized frames with whole checksums: ``([frame], None)``, or a GSO
    super-frame's segments (``native.gso_segment``, what the kernel's tcp_gso_segment would make), or
    ``([], reason)`` for a super-frame that cannot be cut up (UFO, malformed)."""
    off, ln, _, _, gso_size, gso_type, flags = DESC.unpack_from(desc, i * DESC.size)
    f = bytearray(buf[off:off + ln])
    if gso_type:
        segs = native.gso_segment(f, gso_type, gso_size)
        return (segs, None) if segs is not None else ([], "gso_unsupported")
    if flags & CSUM_PARTIAL:
        native.complete_checksum(f)
    return [f], None
