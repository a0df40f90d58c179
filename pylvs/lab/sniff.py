"""Lab packet capture without tcpdump: an AF_PACKET socket on one interface into a pcap file.

    python -m pylvs.lab.sniff --iface eth0 --out x.pcap --seconds 10 --max 100000 [--tcp-port 8080]

Prints ``ready`` once the socket is bound (anything the interface carries after that line is captured),
stops after ``--seconds`` or ``--max`` frames or on SIGTERM/SIGINT, flushes the file, and prints one JSON
line of counters.  Both directions are captured; frames this host sends with checksum offload carry a
partial checksum (as tcpdump would show them).  Timestamps are the kernel's (SO_TIMESTAMP).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import time

from pylvs.io.afpacket import ETH_P_ALL, SOL_PACKET
from pylvs.io.pcap import PcapWriter

PACKET_STATISTICS = 6
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux value; not always exported by the module
_TIMEVAL = struct.Struct("=qq")
SNAP = 262144  # a GRO/GSO super-packet can exceed 64 KiB
POLL = 0.2  # seconds between checks of the stop conditions


def tcp_ports(frame: bytes) -> tuple[int, int] | None:
    """(sport, dport) of a TCP segment in an Ethernet frame (IPv4, or IPv6 without extension headers)."""
    if len(frame) < 14:
        return None
    etype = int.from_bytes(frame[12:14], "big")
    off = 14
    if etype == 0x8100 and len(frame) >= 18:  # one VLAN tag
        etype, off = int.from_bytes(frame[16:18], "big"), 18
    if etype == 0x0800 and len(frame) >= off + 20 and frame[off] >> 4 == 4:
        if frame[off + 9] != 6 or int.from_bytes(frame[off + 6:off + 8], "big") & 0x1FFF:
            return None  # not TCP, or a non-first fragment (no ports in it)
        l4 = off + (frame[off] & 0x0F) * 4
    elif etype == 0x86DD and len(frame) >= off + 40:
        if frame[off + 6] != 6:
            return None
        l4 = off + 40
    else:
        return None
    if len(frame) < l4 + 4:
        return None
    return int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")


def open_socket(iface: str) -> socket.socket:
    # Protocol 0 at creation: the socket receives nothing until bind() names both the interface and
    # ETH_P_ALL, so no frame from another interface slips in between.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((iface, ETH_P_ALL))
    except OSError:
        s.close()
        raise
    s.settimeout(POLL)
    return s


def capture(sock: socket.socket, writer: PcapWriter, seconds: float, max_frames: int,
            port: int | None, stopped) -> dict:
    """Write frames until time, count or ``stopped()``; counters."""
    seen = written = truncated = 0
    anc = socket.CMSG_SPACE(_TIMEVAL.size)
    deadline = time.monotonic() + seconds
    while written < max_frames and not stopped() and time.monotonic() < deadline:
        try:
            frame, ancdata, flags, _addr = sock.recvmsg(SNAP, anc)
        except (TimeoutError, InterruptedError):
            continue
        seen += 1
        if flags & socket.MSG_TRUNC:
            truncated += 1
        if port is not None and port not in (tcp_ports(frame) or ()):
            continue
        ts = None
        for level, typ, val in ancdata:
            if level == socket.SOL_SOCKET and typ == SO_TIMESTAMP and len(val) >= _TIMEVAL.size:
                sec, usec = _TIMEVAL.unpack_from(val)
                ts = sec + usec / 1e6
        writer.write(frame, ts if ts is not None else time.time())
        written += 1
    return {"frames": written, "seen": seen, "truncated": truncated}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pylvs.lab.sniff", description=__doc__.split("\n")[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--out", required=True, help="pcap file to write")
    p.add_argument("--seconds", type=float, default=10.0, help="stop after this long (default 10)")
    p.add_argument("--max", type=int, default=100_000, help="stop after this many frames (default 100000)")
    p.add_argument("--tcp-port", type=int, default=None, help="keep only TCP with this source or dest port")
    a = p.parse_args(argv)
    if a.seconds <= 0 or a.max <= 0:
        p.error("--seconds and --max must be positive")

    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    try:
        sock = open_socket(a.iface)
    except OSError as e:
        print(f"sniff: cannot capture on {a.iface}: {e}", file=sys.stderr)
        return 1
    with sock, open(a.out, "wb") as f:
        writer = PcapWriter(f)
        f.flush()  # the pcap header is on disk even if we are killed before the first frame
        print("ready", flush=True)
        res = capture(sock, writer, a.seconds, a.max, a.tcp_port, lambda: bool(stop))
        f.flush()
        try:  # struct tpacket_stats {u32 packets; u32 drops;}: frames the kernel dropped for want of room
            _pk, drops = struct.unpack("=II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            res["kernel_drops"] = drops
        except OSError:
            pass
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
