"""Real-server side of TUN mode on a kernel without the ``ipip`` module: decapsulate IPIP in user space.

Why: in TUN mode (IPVS ``-i``) the director wraps each client packet in an outer IPv4 header ``DIP → RIP``,
protocol 4 (IPIP), and the real server must unwrap it and deliver the inner packet (addressed to the VIP)
to its own stack.  Normally the kernel does that::

    modprobe ipip; ip link set tunl0 up; ip addr add VIP/32 dev lo
    sysctl -w net.ipv4.conf.tunl0.rp_filter=0 net.ipv4.conf.all.rp_filter=0

but many kernels (containers, minimal VMs, this lab's) have no ``ipip`` module.  Without a protocol-4
handler the kernel still hands every IPIP packet to raw sockets of protocol 4 (with the outer header), and
answers nobody with ICMP "protocol unreachable" once such a socket exists.  So this helper reads them from
``socket(AF_INET, SOCK_RAW, IPPROTO_IPIP)``, checks that each is IPv4-in-IPv4 for one of our VIPs, and
writes the inner packet into a TUN device: the stack receives it as if from a wire, delivers it locally
(the VIP is on ``lo``), and the server answers the client directly, as TUN mode wants.

What the host needs besides: the VIP on ``lo`` with arp_ignore=1/arp_announce=2 (as for DR), and reverse
path filtering off for packets from the TUN device: the client address is routed via the real NIC, not
the TUN device, so a strict rp_filter would drop every decapsulated packet.  This sets
``net.ipv4.conf.<dev>.rp_filter=0``; ``all`` must not be 1 (the kernel uses the larger of the two), which
is the host's (the lab's) job: a warning is logged if it is.

The TUN device is created with IFF_TUN_EXCL (pylvs/io/tuntap.py): without it, a leftover persistent
device of that name would be attached to instead of created, and would then outlive this helper, still
carrying its rp_filter setting and whatever else is on it; with it, that name is refused (pick another
``--dev``, or remove the leftover).  Not persistent, the device vanishes with the helper, even on a crash.

Usage: ``pylvs rs tun-decap --vip VIP [--vip VIP2] [--dev NAME]`` (or ``python -m pylvs.io.tundecap``).
Prints ``ready`` once the socket and the device are up; SIGTERM/SIGINT stop it; counters are logged at exit.
A setup failure (no python-pytun, no privileges, the name taken...) is one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
from collections import Counter

from pylvs.io import sysctl, tuntap

log = logging.getLogger("pylvs.tundecap")

IPPROTO_IPIP = 4
DROP_REASONS = ("not_ipv4", "not_ipip", "truncated", "inner_not_ipv4", "not_for_vip")
POLL = 0.5  # seconds: how soon a stop request is noticed
BURST = 256  # packets handled per wake-up before the stop flag is looked at again
RECV = 65536  # an IPv4 packet is at most 65535 bytes


def _ipv4_header(pkt: bytes | memoryview) -> tuple[int, int] | str:
    """(header length, total length) of an IPv4 header that fits in ``pkt``, or a drop reason."""
    if len(pkt) < 1:
        return "truncated"
    if pkt[0] >> 4 != 4:
        return "not_ipv4"
    ihl = (pkt[0] & 0x0F) * 4
    if ihl < 20 or len(pkt) < ihl:
        return "truncated"
    total = int.from_bytes(pkt[2:4], "big")
    if total < ihl or total > len(pkt):
        return "truncated"
    return ihl, total


def decap(packet: bytes, vips: set[bytes]) -> bytes | str:
    """The inner packet of an IPIP packet addressed to one of ``vips`` (4-byte addresses), or why not.

    Pure and total: any input gives bytes or one of DROP_REASONS, never an exception.  Trailing padding
    after either header's total length is cut off."""
    outer = _ipv4_header(packet)
    if isinstance(outer, str):
        return outer
    ihl, total = outer
    if packet[9] != IPPROTO_IPIP:
        return "not_ipip"
    if int.from_bytes(packet[6:8], "big") & 0x3FFF:
        # MF or an offset: only part of the inner packet is here.  (Live, the kernel reassembles before
        # raw delivery, so this is for callers that feed captured packets.)
        return "truncated"
    inner = packet[ihl:total]
    if len(inner) >= 1 and inner[0] >> 4 != 4:
        return "inner_not_ipv4"
    hdr = _ipv4_header(inner)
    if isinstance(hdr, str):
        return "inner_not_ipv4" if hdr == "not_ipv4" else hdr
    if bytes(inner[16:20]) not in vips:
        return "not_for_vip"
    return bytes(inner[: hdr[1]])


class SetupError(Exception):
    """The helper cannot start: a clear, user-facing reason."""


def open_tun(dev: str):
    """A TUN device of our own (no packet-info header, IFF_TUN_EXCL: see the module docstring), brought
    up, non-blocking, with rp_filter off and IPv6 off (no RS/DAD noise).  SetupError if it cannot be had."""
    try:
        tun = tuntap.open_device(dev, tap=False)
    except tuntap.TunTapError as e:
        raise SetupError(str(e)) from None
    try:
        name = tun.name
        tuntap.disable_ipv6(name)
        try:
            sysctl.write(sysctl.key("net.ipv4.conf", name, "rp_filter"), "0")
        except OSError as e:
            log.warning("cannot set rp_filter=0 on %s: %s", name, e)
        tun.up()
    except BaseException as e:
        tun.close()  # not persistent: closing the only fd removes the device
        if isinstance(e, OSError):  # pytun.Error is one: bringing it up (SIOCSIFFLAGS) failed
            raise SetupError(f"TUN {dev}: cannot set the device up: {e.strerror or e}") from None
        raise
    return tun


def _read(name: str) -> str | None:
    try:
        return sysctl.read(name)
    except OSError:
        return None


def _check_host() -> None:
    if _read("net.ipv4.conf.all.rp_filter") == "1":
        log.warning("net.ipv4.conf.all.rp_filter=1 (strict): decapsulated packets will be dropped unless "
                    "the client is routed via the TUN device; set it to 0 or 2")
    if os.path.exists(sysctl.path("net.ipv4.conf.tunl0")):
        log.warning("the kernel ipip module is loaded (tunl0 exists): if tunl0 is up it decapsulates too, "
                    "and every packet is delivered twice; this helper is not needed there")


def run(vips: list[str], dev: str = "pylvs-decap", stop: threading.Event | None = None,
        ready=None) -> dict[str, int]:
    """Decapsulate until ``stop`` is set; returns the counters.  ``ready()`` is called once set up;
    SetupError before that when the socket or the device cannot be had."""
    stop = stop or threading.Event()
    vipset = {socket.inet_aton(str(ipaddress.IPv4Address(v))) for v in vips}
    counters: Counter[str] = Counter({"rx": 0, "decapsulated": 0, "tun_write_errors": 0})
    counters.update({f"drop_{r}": 0 for r in DROP_REASONS})
    _check_host()
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    except OSError as e:
        hint = " (needs root / CAP_NET_RAW)" if e.errno in (errno.EPERM, errno.EACCES) else ""
        raise SetupError(f"cannot open a raw IPIP socket: {e.strerror or e}{hint}") from None
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # absorb bursts of a bulk transfer
        raw.setblocking(False)
        tun = open_tun(dev)
    except BaseException:
        raw.close()
        raise
    sel = selectors.DefaultSelector()
    buf = bytearray(RECV)
    view = memoryview(buf)
    try:
        sel.register(raw, selectors.EVENT_READ, "raw")
        # The stack may route something out of the device (it has no address, so rarely): read and
        # discard it so the device queue never fills.
        sel.register(tun.fileno(), selectors.EVENT_READ, "tun")
        log.info("tun-decap started: dev=%s vips=%s", tun.name, ",".join(vips))
        if ready is not None:
            ready()
        while not stop.is_set():
            for key, _ in sel.select(POLL):
                if key.data == "tun":
                    for _ in range(BURST):
                        try:
                            os.read(tun.fileno(), RECV)
                        except (BlockingIOError, InterruptedError):
                            break
                        counters["tun_rx_discarded"] += 1
                    continue
                for _ in range(BURST):
                    try:
                        n = raw.recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    counters["rx"] += 1
                    out = decap(view[:n], vipset)
                    if isinstance(out, str):
                        counters[f"drop_{out}"] += 1
                        continue
                    try:
                        os.write(tun.fileno(), out)
                        counters["decapsulated"] += 1
                    except OSError:
                        counters["tun_write_errors"] += 1
    finally:
        sel.close()
        tun.close()
        raw.close()
        log.info("tun-decap stopped: %s", json.dumps(dict(counters), sort_keys=True))
    return dict(counters)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pylvs rs tun-decap", description=__doc__.split("\n")[0])
    p.add_argument("--vip", action="append", required=True, help="a VIP this server serves (repeatable)")
    p.add_argument("--dev", default="pylvs-decap", help="TUN device name (default pylvs-decap)")
    a = p.parse_args(argv)
    try:
        for v in a.vip:
            ipaddress.IPv4Address(v)
    except ValueError as e:
        p.error(str(e))
    if not logging.getLogger("pylvs").handlers:  # run directly, not through pylvs.cli
        from pylvs.logsetup import setup_logging

        setup_logging("info")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    started = threading.Event()

    def ready() -> None:
        started.set()
        print("ready", flush=True)

    try:
        run(a.vip, a.dev, stop, ready=ready)
    except Exception as e:  # before "ready", any failure is a setup failure: say it plainly
        if started.is_set():
            raise
        msg = str(e) if isinstance(e, SetupError) else f"{type(e).__name__}: {e}"
        print(f"pylvs: error: tun-decap cannot start: {msg}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
