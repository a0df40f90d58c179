"""The common shape of the live I/O adapters (pylvs/io/afpacket.py, pylvs/io/tap.py).

The event loop (pylvs/io/loop.py) only needs this much from a port: a file descriptor to wait on, a batch of
frames when it is readable, a way to write one frame, and counters to report.  Keeping the contract this
small is what lets the sans-I/O core stay ignorant of where frames come from.

Two rules every port keeps, because the loop relies on them:

- ``recv_batch`` never blocks: the fd is non-blocking and an empty list means "nothing pending now";
- ``send`` never raises on transient conditions (ENOBUFS when a queue is full, EAGAIN, ENETDOWN while a link
  flaps, EMSGSIZE...): a forwarder drops and counts, exactly as a NIC whose ring is full does.  An exception
  escaping into the loop would stop the whole datapath for one lost frame.
"""

from __future__ import annotations

import collections
from typing import Protocol, runtime_checkable

__all__ = ["PortError", "Port", "COUNTERS"]

#: Counter names every port maintains (others, like ``tx_error_<errno>`` or ``csum_completed``, may appear).
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
    #: rx_frames, rx_bytes, tx_frames, tx_bytes, tx_errors, rx_errors, ...
    counters: collections.Counter

    def fileno(self) -> int:
        """The descriptor to wait on for readability."""
        ...

    def recv_batch(self, max_frames: int) -> list[bytearray]:
        """Up to ``max_frames`` received frames; ``[]`` when nothing is pending (never blocks)."""
        ...

    # Optional, and what the runner uses when a port has it (both ports here do):
    #   recv_into_batch(batch, max_frames) -> int
    # fills a pylvs.core.batch.Batch (its buffer and descriptors, with the IN_CSUM_PARTIAL flag where the
    # checksum is partial) instead of returning objects; the fast path then works on that buffer in place,
    # and the runner sends forwarded frames with native.tx_run on the port's fileno() (sendmmsg, or
    # write() for a TAP device).

    def send(self, frame: bytes | bytearray) -> None:
        """Write one frame; transient errors are counted in ``tx_errors``, never raised."""
        ...

    def close(self) -> None:
        """Release the descriptor (a TAP device vanishes with it)."""
        ...
