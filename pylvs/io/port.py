"""The common shape of the live I/O adapters (pylvs/io/afpacket.py, pylvs/io/tap.py).

The event loop (pylvs/io/loop.py) only needs this much from a port: a file descriptor to wait on, a batch of
frames when it is readable, a way to write one frame, and counters to report.  Keeping the contract this
small is what lets the sans-I/O core stay ignorant of where frames come from.

Two rules every port keeps, because the loop relies on them:

- receiving never blocks: the fd is non-blocking and 0 frames means "nothing pending now";
- ``send`` never raises on transient conditions (ENOBUFS when a queue is full, EAGAIN, ENETDOWN while a link
  flaps, EMSGSIZE...): a forwarder drops and counts, exactly as a NIC whose ring is full does.  An exception
  escaping into the loop would stop the whole datapath for one lost frame.
"""

from __future__ import annotations

import collections
from typing import Protocol, runtime_checkable

__all__ = ["PortError", "Port", "COUNTERS"]

#: Counter names every port maintains (others, like ``tx_error_<errno>``, ``rx_gso`` or ``rx_csum_partial``, may appear).
COUNTERS = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "tx_errors", "rx_errors")


class PortError(Exception):
    """A port could not be opened: a clear, user-facing message (the CLI prints it and exits 2)."""


@runtime_checkable
class Port(Protocol):
    """One live interface pylvs sends and receives Ethernet frames on."""

    #: the interface name of the config (the ``interface`` of a Send action)
    name: str
    #: pylvs's own MAC on this interface (source of what it sends, destination it answers ARP with)
    mac: bytes
    mtu: int
    #: "afpacket" | "tap"
    kind: str
    #: frames come and go with a virtio-net header (GSO super-frames, partial checksums pass whole)
    offload: bool
    #: bytes one received frame may take (a batch's slots must hold that much)
    frame_room: int
    #: rx_frames, rx_bytes, tx_frames, tx_bytes, tx_errors, rx_errors, ...
    counters: collections.Counter

    def fileno(self) -> int:
        """The descriptor to wait on for readability."""
        ...

    def recv_into_batch(self, batch, max_frames: int) -> int:
        """Fill a pylvs.core.batch.Batch (buffer and descriptors with the checksum state and GSO fields)
        with up to ``max_frames`` frames; returns how many, 0 when nothing is pending (never
        blocks).  The fast path works on that buffer in place, and the runner sends forwarded frames from
        it with native.tx_run on ``fileno()`` (sendmmsg, or write() for a TAP device)."""
        ...

    def recv_batch(self, max_frames: int) -> list[bytearray]:
        """The same frames as objects (tools, tests); ``[]`` when nothing is pending."""
        ...

    def send_many(self, frames) -> None:
        """Several frames in order, as few system calls as possible; failures counted, never raised."""
        ...

    def send(self, frame: bytes | bytearray) -> None:
        """Write one frame; transient errors are counted in ``tx_errors``, never raised."""
        ...

    def close(self) -> None:
        """Release the descriptor (a TAP device vanishes with it)."""
        ...
