"""A batch of frames in one buffer, the shape :meth:`Director.handle_batch` and the fast path take.

Fixed slots of ``stride`` bytes; each frame starts ``HEADROOM`` bytes into its slot, so the fast path can
grow it to the left (TUN adds a 20-byte outer header in place).  The descriptors are one ``bytearray`` of
``DESC`` records (offset, length, verdict, reason): no Python object per packet crosses into the fast path.
"""

from __future__ import annotations

from typing import Iterator

from pylvs import native
# The descriptor layout and its input flag (the frame's TCP/UDP checksum is only partial: checksum offload,
# TP_STATUS_CSUMNOTREADY; the fast path completes it first, whatever it decides), as native/pylvs_native.h
# defines them.
from pylvs._pure.flowtable import DESC, IN_CSUM_PARTIAL

HEADROOM = 64


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

    def commit(self, length: int, flags: int = 0) -> None:
        DESC.pack_into(self.desc, self.n * DESC.size, self.n * self.stride + HEADROOM, length, -1, flags)
        self.n += 1

    def add(self, frame: bytes | bytearray) -> None:
        if self.n >= self.size or len(frame) > self.frame_room:
            raise ValueError("batch full or frame too long")
        self.room()[: len(frame)] = frame
        self.commit(len(frame))

    def frames(self) -> list[bytearray]:
        """Copies of the received frames, partial checksums completed (for callers that want objects)."""
        out = []
        for i in range(self.n):
            off, ln, _, flags = DESC.unpack_from(self.desc, i * DESC.size)
            f = bytearray(self.view[off:off + ln])
            if flags & IN_CSUM_PARTIAL:
                native.complete_checksum(f)
            out.append(f)
        return out

    def results(self) -> Iterator[tuple[int, int, memoryview]]:
        """``(index, verdict, frame)`` after processing: verdict ≥ 0 is the egress interface index."""
        for i in range(self.n):
            off, ln, verdict, _ = DESC.unpack_from(self.desc, i * DESC.size)
            yield i, verdict, self.view[off:off + ln]
