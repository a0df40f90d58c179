"""What the slow path gets for a frame the fast path punted: wire-sized frames with whole checksums.

The fast path forwards GSO super-frames and partial checksums as they came (see native/fastpath.c); the slow
path (:meth:`Director.handle`) works on frames as a wire carries them.  So a punted frame has its partial
checksum finished, and a punted super-frame (a flow's first data before it is established, a TUN egress, a
port without virtio-net headers) is cut into the segments the kernel would have sent — counted in the
director's events as ``gso_segmented`` (super-frames) and ``gso_segments`` (what they became), because it is
the expensive way: software segmentation, then the slow path once per segment.
"""

from __future__ import annotations

from pylvs._pure.flowtable import DESC
from pylvs.core.batch import wire_frames



def punted_frames(buf, desc, i: int, director) -> tuple[int, list[bytearray]]:
    """``(verdict, frames)`` for descriptor ``i``: verdict >= 0 means forwarded (no frames).  A super-frame
    that cannot be cut up (UFO, headers that do not add up) is a drop, counted by reason."""
    verdict = DESC.unpack_from(desc, i * DESC.size)[2]
    if verdict >= 0:
        return verdict, []
    frames, refused = wire_frames(buf, desc, i)
    if refused is not None:
        director.drops[refused] += 1
    elif DESC.unpack_from(desc, i * DESC.size)[5]:
        director.events["gso_segmented"] += 1
        director.events["gso_segments"] += len(frames)
    return verdict, frames
