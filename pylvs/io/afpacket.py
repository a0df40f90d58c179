"""AF_PACKET adapter: one raw socket bound to an existing interface (``driver = "afpacket"``).

The details a naive forwarder gets wrong, and what this does about them:

- **Its own frames.**  An ETH_P_ALL socket also sees what the host transmits (PACKET_OUTGOING), including
  what pylvs itself just sent.  PACKET_IGNORE_OUTGOING (Linux 4.20) stops them in the kernel; the BPF
  filter rejects them too (older kernels), and the receive path checks ``sll_pkttype`` as a last line.
- **Offloads: GSO super-frames and partial checksums** (``offload``, on unless ``pylvs run --no-offload``).
  A veth, virtio or any NIC doing TSO/GRO hands the host frames of up to 64 KB that stand for many
  wire-sized segments, with a TCP/UDP checksum field holding only the pseudo-header sum (CHECKSUM_PARTIAL).
  With PACKET_VNET_HDR every frame comes with a virtio-net header saying so (gso_type, gso_size,
  csum_start/offset): the fast path rewrites the super-frame once, keeping the partial checksum's
  pseudo-header part right (addresses; ports are summed later), and sends it back with its header, for the
  kernel (or the NIC) to segment and checksum — the batch and offload design, not Python, sets the ceiling.
  Counted: ``rx_gso`` / ``tx_gso`` super-frames, ``rx_csum_partial``; a super-frame the fast path cannot
  pass whole (the slow path, TUN) is cut up in software (the director's ``gso_segmented`` event).
  Without offload, super-frames do not fit and are counted ``rx_oversize`` (``--host-setup`` turns GRO off),
  and a partial checksum (TP_STATUS_CSUMNOTREADY in the ``tpacket_auxdata``) is finished before the frame
  leaves: a wire needs a whole one.
- **Many frames per system call.**  ``recv_into_batch`` takes up to a batch with one recvmmsg
  (``native.rx_afpacket``) straight into the buffer the fast path rewrites; the runner sends runs of
  forwarded frames with one sendmmsg each (``native.tx_run``).
- **Filtering in the kernel.**  A classic BPF program (pylvs/io/bpf.py) passes only ARP, ICMP and IPv4 for
  our addresses or from NAT real servers; it is attached before the socket is bound to a protocol, so no
  unfiltered frame is ever queued.
- **Frames the kernel keeps handling.**  The host's own stack still receives every frame.  The host must
  not own the VIPs/LIPs and must not forward (``net.ipv4.ip_forward=0``), or it would answer or forward
  the same packets: ``pylvs run --host-setup`` applies that (pylvs/io/hostsetup.py).
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import socket
import struct
from collections import Counter

from pylvs import native
from pylvs._pure.io import RX_COUNTERS
from pylvs.core.batch import GSO_ROOM, HEADROOM, Batch
from pylvs.io import bpf
from pylvs.io.port import PortError

log = logging.getLogger("pylvs.afpacket")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
_TP_STATS = struct.Struct("II")  # struct tpacket_stats: tp_packets, tp_drops
PACKET_MR_PROMISC = 1
_NO_VNET = bytes(10)  # a virtio-net header for a frame with a whole checksum and no GSO
SIOCGIFMTU = 0x8921


class AfPacketPort:
    """A raw socket on one interface; see the module docstring."""

    kind = "afpacket"

    def __init__(self, name: str, sock: socket.socket, mac: bytes, mtu: int, promisc: bool,
                 offload: bool = False) -> None:
        self.name = name
        #: frames come and go with a virtio-net header: GSO super-frames and partial checksums pass whole
        self.offload = offload
        self.sock = sock
        self.mac = mac
        self.mtu = mtu
        self.promisc = promisc
        self._counters: Counter[str] = Counter()
        self._rx = array.array("Q", bytes(8 * len(RX_COUNTERS)))  # what native.rx_afpacket counts

    @property
    def counters(self) -> Counter:
        """rx_frames, rx_bytes, tx_frames, ... (the batched receive's own counts folded in)."""
        rx = self._rx
        if any(rx):
            for i, name in enumerate(RX_COUNTERS):
                if rx[i]:
                    self._counters[name] += rx[i]
                    rx[i] = 0
        return self._counters

    @classmethod
    def open(cls, iface, *, rcvbuf: int = 32 << 20, offload: bool = True) -> "AfPacketPort":
        """Open the socket on ``iface`` (a config Interface).  Not yet receiving: call :meth:`start`.
        ``offload``: ask for virtio-net headers (PACKET_VNET_HDR, Linux 3.13)."""
        try:
            # Protocol 0: the socket receives nothing until start() binds it to ETH_P_ALL, after the filter.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise PortError(f"interface {iface.name}: opening an AF_PACKET socket needs CAP_NET_RAW "
                            "(run as root or grant the capability)") from None
        try:
            return cls._setup(iface, sock, rcvbuf, offload)
        except PortError:
            sock.close()
            raise
        except OSError as e:
            sock.close()
            hint = " (no such interface in this network namespace?)" if e.errno == errno.ENODEV else ""
            raise PortError(f"interface {iface.name}: {e.strerror or e}{hint}") from None
        except BaseException:
            sock.close()
            raise

    @classmethod
    def _setup(cls, iface, sock: socket.socket, rcvbuf: int, offload: bool) -> "AfPacketPort":
        sock.bind((iface.name, 0))
        dev_mac = sock.getsockname()[4]
        dev_mtu = struct.unpack_from("i", fcntl.ioctl(sock.fileno(), SIOCGIFMTU,
                                                      struct.pack("16si", iface.name.encode(), 0)), 16)[0]
        mac = iface.mac or dev_mac
        promisc = mac != dev_mac
        if promisc:
            # The config asks for a MAC the NIC does not own: its frames only reach us in promiscuous mode
            # (a socket membership, released by the kernel when the socket closes).
            mreq = struct.pack("iHH8s", socket.if_nametoindex(iface.name), PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            log.info("%s: config MAC %s differs from the device's %s: promiscuous", iface.name,
                     mac.hex(":"), dev_mac.hex(":"))
        mtu = min(iface.mtu, dev_mtu)
        if mtu != iface.mtu:
            log.warning("%s: device MTU %d is below the configured %d; using %d", iface.name, dev_mtu,
                        iface.mtu, mtu)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:  # kernel < 4.20: the BPF filter and the pkttype check cover it
            pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root), beyond rmem_max
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if offload:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            except OSError as e:  # say so: without it, super-frames cannot be taken and GRO must be off
                log.warning("%s: PACKET_VNET_HDR refused (%s): no offload passthrough, wire-sized frames only",
                            iface.name, e.strerror or e)
                offload = False
        sock.setblocking(False)
        return cls(iface.name, sock, mac, mtu, promisc, offload)

    def start(self, dst_addrs, src_addrs, host_addrs=()) -> int:
        """Attach the filter for these addresses, then start receiving; returns the program length."""
        n = self.set_filter(dst_addrs, src_addrs, host_addrs)
        self.sock.bind((self.name, ETH_P_ALL))
        return n

    def set_filter(self, dst_addrs, src_addrs, host_addrs=()) -> int:
        """(Re)attach the filter: SO_ATTACH_FILTER swaps programs atomically, so a reload that adds or
        lets go of a VIP loses no frame."""
        prog = bpf.program(dst_addrs, src_addrs, promisc=self.promisc, host_addrs=host_addrs)
        bpf.attach(self.sock, prog)
        return len(prog)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def frame_room(self) -> int:
        """Bytes a received frame may take: a whole GSO super-frame with offload, else the MTU and slack."""
        return GSO_ROOM if self.offload else self.mtu + 14 + 4 + 64

    def recv_batch(self, max_frames: int) -> list[bytearray]:
        """The frames of :meth:`recv_into_batch` as objects, as a wire would carry them (partial checksums
        finished, super-frames segmented)."""
        batch = Batch(max(1, min(max_frames, 64)), self.frame_room)
        self.recv_into_batch(batch, max_frames)
        return batch.frames()

    def recv_into_batch(self, batch, max_frames: int) -> int:
        """Up to a batch of frames straight into ``batch``'s slots, many per system call
        (``native.rx_afpacket``: recvmmsg in C, or its twin).  Our own transmissions (PACKET_OUTGOING),
        frames that do not fit (a GRO/TSO super-frame without offload; never forwarded cut short) and
        VLAN-tagged ones (the kernel stripped the tag into the auxdata: forwarding them untagged would leak
        them across) are counted and left out; the descriptors carry the checksum state and GSO fields."""
        room = min(batch.frame_room, self.frame_room)
        batch.n = native.rx_afpacket(self.sock.fileno(), batch.buf, batch.desc, min(max_frames, batch.size),
                                     batch.stride, HEADROOM, room, self.offload, self._rx)
        return batch.n

    def poll_kernel_stats(self) -> int:
        """Frames the kernel dropped because this socket's receive queue was full since the last call
        (PACKET_STATISTICS; reading it resets it), added to ``rx_kernel_drops``.  Without this such losses
        would be invisible: they never reach pylvs to be counted."""
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TP_STATS.size)
        except OSError:
            return 0
        drops = _TP_STATS.unpack(raw)[1]
        if drops:
            self._counters["rx_kernel_drops"] += drops
        return drops

    def send_many(self, frames) -> None:
        """Several frames, in order, with as few system calls as possible (``native.send_frames``)."""
        sent, nbytes, errors = native.send_frames(self.sock.fileno(), frames, self.offload)
        c = self._counters
        c["tx_frames"] += sent
        c["tx_bytes"] += nbytes
        if errors:
            c["tx_errors"] += errors

    def send(self, frame) -> None:
        try:
            self.sock.sendmsg([_NO_VNET, frame] if self.offload else [frame])
        except OSError as e:  # ENOBUFS, ENETDOWN, EMSGSIZE...: count, never let it reach the loop
            self._counters["tx_errors"] += 1
            self._counters[f"tx_error_{e.errno}"] += 1
            return
        self._counters["tx_frames"] += 1
        self._counters["tx_bytes"] += len(frame)

    def close(self) -> None:
        self.sock.close()
