"""TAP adapter (``driver = "tap"``): pylvs is a host behind a TAP device it creates itself.

The kernel keeps its own interfaces, addresses and routes and acts as the router in front of pylvs; the host
recipe (pylvs/io/hostsetup.py) routes the VIPs/LIPs into the TAP.  What this module takes care of:

- **A device of our own, gone when we are** (pylvs/io/tuntap.py): created with IFF_TUN_EXCL and never made
  persistent, so routes and addresses on it vanish with pylvs, even on a crash.
- **Two MACs.**  The TAP netdev has the kernel's MAC (random, ``eth_hw_addr_random`` at creation); pylvs,
  as a host on the other end of the virtual wire, needs its own.  If both were equal, the kernel would take
  pylvs's frames for its own echo and pylvs could not tell the kernel's ARP replies apart.
- **No IPv6 noise.**  IPv6 is disabled on the device before it goes up (pylvs/io/tuntap.py).
- **Frame boundaries.**  One read() is one Ethernet frame and one write() injects one; the loop over reads
  runs in C (``native.rx_tap``), so Python still runs once per batch.
- **Offloads** (``offload``, on unless ``pylvs run --no-offload``).  Created with IFF_VNET_HDR and
  TUNSETOFFLOAD (checksum, TSO4, USO4 where the kernel has it), the device advertises TSO/checksum offload to
  the kernel, which then hands over whole GSO super-frames with partial checksums, each behind a virtio-net
  header, and takes them back the same way: as with AF_PACKET (pylvs/io/afpacket.py), the fast path rewrites
  a super-frame once.  Without offload a TAP has no TSO/GSO features, so the kernel segments and finishes
  checksums before handing frames over: they fit the MTU.
"""

from __future__ import annotations

import array
import hashlib
import logging
import os
from collections import Counter

from pylvs import native
from pylvs._pure.io import RX_COUNTERS
from pylvs.core.batch import GSO_ROOM, HEADROOM, Batch
from pylvs.io import tuntap
from pylvs.io.port import PortError

log = logging.getLogger("pylvs.tap")

_SLACK = 14 + 4 + 64  # Ethernet header, one VLAN tag, margin: a read this long may have been cut short
_NO_VNET = bytes(10)  # a virtio-net header for a frame with a whole checksum and no GSO


def derived_mac(name: str) -> bytes:
    """A stable MAC for ``name``: locally administered (0x02 bit), unicast (I/G bit clear), so it cannot
    collide with a vendor-assigned address; the same name always gives the same MAC across restarts, so
    neighbours' ARP caches stay right."""
    return b"\x02" + hashlib.sha256(b"pylvs-tap:" + name.encode()).digest()[:5]


class TapPort:
    """One TAP device created by pylvs; see the module docstring."""

    kind = "tap"

    def __init__(self, name: str, dev, mac: bytes, mtu: int, kernel_mac: bytes, offload: bool = False) -> None:
        self.name = name
        self.dev = dev
        self.fd = dev.fileno()
        self.mac = mac
        self.mtu = mtu
        #: the kernel side's MAC (the TAP netdev's own address)
        self.kernel_mac = kernel_mac
        self.counters: Counter[str] = Counter()
        self._closed = False
        #: frames come and go behind a virtio-net header (IFF_VNET_HDR): super-frames pass whole
        self.offload = offload
        self.frame_room = GSO_ROOM + 1 if offload else mtu + _SLACK
        self._rx = array.array("Q", bytes(8 * len(RX_COUNTERS)))  # what native.rx_tap counts

    def _fold_rx(self) -> None:
        rx = self._rx
        if any(rx):
            for i, name in enumerate(RX_COUNTERS):
                if rx[i]:
                    self.counters[name] += rx[i]
                    rx[i] = 0

    @classmethod
    def open(cls, iface, *, offload: bool = True) -> "TapPort":
        """Create the TAP device ``iface.name`` (a config Interface), set its MTU, bring it up; ``offload``:
        with virtio-net headers and TUNSETOFFLOAD."""
        name = iface.name
        try:
            dev = tuntap.open_device(name, tap=True, vnet=offload)
        except tuntap.TunTapError as e:
            raise PortError(str(e)) from None
        import pytun  # there, or open_device would have failed

        try:
            kernel_mac = bytes(dev.hwaddr)
            mac = iface.mac or derived_mac(name)
            if mac == kernel_mac:
                raise PortError(f"TAP {name}: pylvs's MAC {mac.hex(':')} equals the kernel side's MAC of the "
                                "device; pylvs is a separate host on that link and needs its own (set another "
                                "`mac` for the interface)")
            try:
                dev.mtu = iface.mtu
            except pytun.Error as e:
                raise PortError(f"TAP {name}: cannot set MTU {iface.mtu}: {e.strerror or e}") from None
            tuntap.disable_ipv6(name)
            took = tuntap.set_offload(dev) if offload else "off"
            dev.up()
        except BaseException as e:
            dev.close()  # not persistent: closing the only fd removes the device
            if isinstance(e, pytun.Error):  # bringing it up (SIOCSIFFLAGS) failed
                raise PortError(f"TAP {name}: cannot set the device up: {e.strerror or e}") from None
            raise
        log.info("%s: TAP created, pylvs MAC %s, kernel side %s, mtu %d, offloads %s", name, mac.hex(":"),
                 kernel_mac.hex(":"), iface.mtu, took)
        return cls(name, dev, mac, iface.mtu, kernel_mac, offload)

    def fileno(self) -> int:
        return self.fd

    def recv_batch(self, max_frames: int) -> list[bytearray]:
        """The frames of :meth:`recv_into_batch` as objects."""
        batch = Batch(max(1, min(max_frames, 64)), self.frame_room)
        self.recv_into_batch(batch, max_frames)
        return batch.frames()

    def recv_into_batch(self, batch, max_frames: int) -> int:
        """Up to a batch of frames straight into ``batch``'s slots (``native.rx_tap``: one read per frame, the
        loop in C).  A read that fills its whole slot may have been cut short (tun_put_user copies what fits):
        counted ``rx_oversize``, never forwarded."""
        room = min(batch.frame_room, self.frame_room)
        batch.n = native.rx_tap(self.fd, batch.buf, batch.desc, min(max_frames, batch.size), batch.stride,
                                HEADROOM, room, self.offload, self._rx)
        self._fold_rx()
        return batch.n

    def send_many(self, frames) -> None:
        """Several frames, in order (``native.send_frames``: one write() each on a TAP device)."""
        sent, nbytes, errors = native.send_frames(self.fd, frames, self.offload)
        c = self.counters
        c["tx_frames"] += sent
        c["tx_bytes"] += nbytes
        if errors:
            c["tx_errors"] += errors

    def send(self, frame) -> None:
        try:
            os.writev(self.fd, [_NO_VNET, frame] if self.offload else [frame])
        except OSError as e:  # EAGAIN (queue full), EINVAL (runt), EIO (device down)...: count, drop
            self.counters["tx_errors"] += 1
            self.counters[f"tx_error_{e.errno}"] += 1
            return
        self.counters["tx_frames"] += 1
        self.counters["tx_bytes"] += len(frame)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.dev.close()
