"""TAP adapter (``driver = "tap"``): pylvs is a host behind a TAP device it creates itself.

The kernel keeps its own interfaces, addresses and routes and acts as the router in front of pylvs; the host
recipe (pylvs/io/hostsetup.py) routes the VIPs/LIPs into the TAP.  What this module takes care of:

- **A device of our own, gone when we are** (pylvs/io/tuntap.py): created with IFF_TUN_EXCL and never made
  persistent, so routes and addresses on it vanish with pylvs, even on a crash.
- **Two MACs.**  The TAP netdev has the kernel's MAC (random, ``eth_hw_addr_random`` at creation); pylvs,
  as a host on the other end of the virtual wire, needs its own.  If both were equal, the kernel would take
  pylvs's frames for its own echo and pylvs could not tell the kernel's ARP replies apart.
- **No IPv6 noise.**  IPv6 is disabled on the device before it goes up (pylvs/io/tuntap.py).
- **Frame boundaries.**  One read() is one Ethernet frame and one write() injects one.  A TAP has no
  TSO/GSO features unless TUNSETOFFLOAD asks for them, so the kernel segments before handing frames over:
  they fit the MTU.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter

from pylvs import native
from pylvs.core.batch import Batch
from pylvs.io import tuntap
from pylvs.io.port import PortError

log = logging.getLogger("pylvs.tap")

_SLACK = 14 + 4 + 64  # Ethernet header, one VLAN tag, margin: a read this long may have been cut short


def derived_mac(name: str) -> bytes:
    """A stable MAC for ``name``: locally administered (0x02 bit), unicast (I/G bit clear), so it cannot
    collide with a vendor-assigned address; the same name always gives the same MAC across restarts, so
    neighbours' ARP caches stay right."""
    return b"\x02" + hashlib.sha256(b"pylvs-tap:" + name.encode()).digest()[:5]


class TapPort:
    """One TAP device created by pylvs; see the module docstring."""

    kind = "tap"

    def __init__(self, name: str, dev, mac: bytes, mtu: int, kernel_mac: bytes) -> None:
        self.name = name
        self.dev = dev
        self.fd = dev.fileno()
        self.mac = mac
        self.mtu = mtu
        #: the kernel side's MAC (the TAP netdev's own address)
        self.kernel_mac = kernel_mac
        self.counters: Counter[str] = Counter()
        self._bufsize = mtu + _SLACK
        self._closed = False
        #: no virtio-net headers (IFF_VNET_HDR) on the TAP yet: the kernel segments before handing frames over
        self.offload = False
        self.frame_room = self._bufsize

    @classmethod
    def open(cls, iface) -> "TapPort":
        """Create the TAP device ``iface.name`` (a config Interface), set its MTU, bring it up."""
        name = iface.name
        try:
            dev = tuntap.open_device(name, tap=True)
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
            dev.up()
        except BaseException as e:
            dev.close()  # not persistent: closing the only fd removes the device
            if isinstance(e, pytun.Error):  # bringing it up (SIOCSIFFLAGS) failed
                raise PortError(f"TAP {name}: cannot set the device up: {e.strerror or e}") from None
            raise
        log.info("%s: TAP created, pylvs MAC %s, kernel side %s, mtu %d", name, mac.hex(":"),
                 kernel_mac.hex(":"), iface.mtu)
        return cls(name, dev, mac, iface.mtu, kernel_mac)

    def fileno(self) -> int:
        return self.fd

    def recv_batch(self, max_frames: int) -> list[bytearray]:
        """The frames of :meth:`recv_into_batch` as objects."""
        batch = Batch(max(1, min(max_frames, 64)), self._bufsize)
        self.recv_into_batch(batch, max_frames)
        return batch.frames()

    def recv_into_batch(self, batch, max_frames: int) -> int:
        """Up to a batch of frames straight into ``batch``'s slots (a TAP device gives one per read)."""
        c = self.counters
        batch.clear()
        room = min(batch.frame_room, self._bufsize)
        for _ in range(min(max_frames, batch.size)):
            try:
                n = os.readv(self.fd, [batch.room()[:room]])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                c["rx_errors"] += 1
                c[f"rx_error_{e.errno}"] += 1
                break
            if n >= room:
                # Filled the whole slot: the frame may have been longer and cut (tun_put_user copies what
                # fits).  Never forward a frame cut short.
                c["rx_oversize"] += 1
                continue
            c["rx_frames"] += 1
            c["rx_bytes"] += n
            batch.commit(n)
        return batch.n

    def send_many(self, frames) -> None:
        """Several frames, in order (``native.send_frames``: one write() each on a TAP device)."""
        sent, nbytes, errors = native.send_frames(self.fd, frames)
        c = self.counters
        c["tx_frames"] += sent
        c["tx_bytes"] += nbytes
        if errors:
            c["tx_errors"] += errors

    def send(self, frame) -> None:
        try:
            os.write(self.fd, frame)
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
