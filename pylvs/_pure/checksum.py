"""Internet checksum, full (RFC 1071) and incremental (RFC 1624).

All sums are one's-complement 16-bit arithmetic on big-endian words.  The
incremental forms follow RFC 1624 eqn. 3, ``HC' = ~(~HC + ~m + m')``, which
(unlike eqn. 2 of RFC 1141) never yields the forbidden 0x0000 from a non-zero
field where the full computation gives 0xFFFF.
"""

from __future__ import annotations

import struct
import sys

__all__ = [
    "csum_partial",
    "csum_fold",
    "checksum",
    "pseudo_header_sum",
    "csum_replace2",
    "csum_replace4",
    "csum_replace_bytes",
    "complete_checksum",
]

_LITTLE = sys.byteorder == "little"
_WORDS = {n: struct.Struct(f"!{n // 2}H") for n in range(0, 66, 2)}


def csum_partial(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Unfolded one's-complement sum of ``data`` as big-endian 16-bit words.

    An odd trailing byte is padded with a zero byte (RFC 1071 §4.1).  The
    result is an int that may exceed 16 bits; fold it with :func:`csum_fold`.
    """
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\x00"
        n += 1
    if n <= 64:
        # Short fields (addresses, ports, headers): one struct call beats a loop.
        return initial + sum(_WORDS[n].unpack(data))
    mv = memoryview(data).cast("H")
    s = sum(mv)
    if _LITTLE:
        # The words were read little-endian: the byte swap of a one's
        # complement sum is the sum of the byte-swapped words (RFC 1071 §2(B)).
        s = _fold(s)
        s = ((s & 0xFF) << 8) | (s >> 8)
    return s + initial


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum_fold(s: int) -> int:
    """Fold an unfolded sum to 16 bits and complement it: the checksum field."""
    return (~_fold(s)) & 0xFFFF


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The RFC 1071 checksum of ``data`` (plus an unfolded ``initial`` sum)."""
    return csum_fold(csum_partial(data, initial))


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Unfolded sum of the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 8200 §8.1).

    ``src``/``dst`` are packed addresses of 4 (IPv4) or 16 (IPv6) bytes.
    """
    return csum_partial(src) + csum_partial(dst) + proto + length


def csum_replace2(check: int, old: int, new: int) -> int:
    """Update checksum field ``check`` when a 16-bit word changes (RFC 1624 eqn. 3)."""
    s = ((~check) & 0xFFFF) + ((~old) & 0xFFFF) + new
    return (~_fold(s)) & 0xFFFF


def csum_replace4(check: int, old: int, new: int) -> int:
    """Update checksum field ``check`` when an aligned 32-bit field changes."""
    s = ((~check) & 0xFFFF) + ((~(old >> 16)) & 0xFFFF) + ((~old) & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
    return (~_fold(s)) & 0xFFFF


def csum_replace_bytes(check: int, old: bytes, new: bytes) -> int:
    """Update ``check`` when an even-aligned run of bytes changes (e.g. an address).

    ``old`` and ``new`` must have the same even length and start at an even
    offset within the checksummed data.
    """
    if len(old) != len(new) or len(old) % 2:
        raise ValueError("old and new must have the same even length")
    s = ((~check) & 0xFFFF) + ((~_fold(csum_partial(old))) & 0xFFFF) + csum_partial(new)
    return (~_fold(s)) & 0xFFFF


def complete_checksum(frame) -> bool:
    """Fill in the TCP/UDP checksum of an IPv4 frame in full; False when the frame is not one.

    For frames the local stack handed over with CHECKSUM_PARTIAL (AF_PACKET TP_STATUS_CSUMNOTREADY): the
    field holds only the pseudo-header sum.  Recomputing from scratch (pseudo header + the segment with the
    field zeroed, RFC 793/768) is right whatever partial value it held.  ``frame`` is edited in place."""
    if memoryview(frame).readonly:
        raise BufferError("Object is not writable.")
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return False
    ihl = (frame[14] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    proto = frame[23]
    l4 = 14 + ihl
    end = 14 + total
    if ihl < 20 or total < ihl or end > len(frame) or int.from_bytes(frame[20:22], "big") & 0x3FFF:
        return False  # bad header, truncated, or a fragment: nothing to complete (the core will judge it)
    if proto == 6 and end - l4 >= 20:
        off = l4 + 16
    elif proto == 17 and end - l4 >= 8:
        off = l4 + 6
    else:
        return False
    frame[off:off + 2] = b"\x00\x00"
    s = pseudo_header_sum(bytes(frame[26:30]), bytes(frame[30:34]), proto, end - l4)
    c = checksum(bytes(frame[l4:end]), s)
    if proto == 17 and c == 0:
        c = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
    frame[off:off + 2] = c.to_bytes(2, "big")
    return True
