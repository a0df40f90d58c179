"""``pylvs replay``: feed a capture through the core, write what the director sends.

The arrival interface of each frame comes from its destination MAC (a
broadcast ARP belongs to the interface whose subnet holds the ARP target), and
the time from its timestamp, so the same capture always gives the same output,
byte for byte.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import IO, Iterator

import dpkt

from pylvs.core.packet import BROADCAST, ETH_P_ARP, ETH_P_IP
from pylvs.core.pipeline import Director, Drop, Hold, Send, verdict


def read_frames(path: str) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) from a pcap or pcapng file with Ethernet link type."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise ValueError(f"{path}: link type {reader.datalink()} is not Ethernet")
        for ts, frame in reader:
            yield float(ts), bytes(frame)


class PcapWriter:
    def __init__(self, f: IO[bytes]) -> None:
        self._w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, snaplen=262144)

    def write(self, frame: bytes, ts: float) -> None:
        self._w.writepkt(frame, ts=ts)


def arrival_interface(director: Director, frame: bytes) -> str | None:
    """Which of the director's interfaces a captured frame arrived on."""
    if len(frame) < 14:
        return None
    dmac = frame[0:6]
    if dmac == BROADCAST:
        etype = struct.unpack_from("!H", frame, 12)[0]
        if etype == ETH_P_ARP and len(frame) >= 42:
            return director.routes.on_link(frame[38:42])
        if etype == ETH_P_IP and len(frame) >= 34:
            return director.routes.on_link(frame[26:30])
        return None
    matches = [i for i in director.ifaces.values() if i.mac == dmac]
    if len(matches) > 1 and len(frame) >= 34:
        # Several interfaces share a MAC: pick the one on the sender's subnet.
        on = director.routes.on_link(frame[26:30])
        for i in matches:
            if i.name == on:
                return i.name
    return matches[0].name if matches else None


@dataclass
class ReplayResult:
    frames_in: int = 0
    frames_out: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    out_by_interface: dict[str, int] = field(default_factory=dict)


def replay(director: Director, in_path: str, out: IO[bytes], log: IO[str] | None = None) -> ReplayResult:
    """Run every frame of ``in_path`` through ``director``; write sends to ``out``."""
    writer = PcapWriter(out)
    res = ReplayResult()
    last_ts = 0.0
    for i, (ts, frame) in enumerate(read_frames(in_path), start=1):
        res.frames_in += 1
        last_ts = ts
        # timers first (ARP retries, expiry), as a live loop would run them
        for a in director.tick(ts):
            if isinstance(a, Send):
                writer.write(a.frame, ts)
                res.frames_out += 1
        ifname = arrival_interface(director, frame)
        if ifname is None:
            director.drops["not_for_us"] += 1
            actions = [Drop("not_for_us")]
        else:
            actions = director.handle(frame, ifname, ts)
        sends = [a for a in actions if isinstance(a, Send)]
        for a in sends:
            writer.write(a.frame, ts)
            res.out_by_interface[a.interface] = res.out_by_interface.get(a.interface, 0) + 1
        res.frames_out += len(sends)
        v = verdict(actions)
        res.verdicts[v] = res.verdicts.get(v, 0) + 1
        if log is not None:
            reasons = [a.reason for a in actions if isinstance(a, (Drop, Hold))]
            rec = {"frame": i, "in": ifname, "verdict": v, "out": [a.interface for a in sends],
                   "reason": ",".join(reasons)}
            log.write(json.dumps(rec) + "\n")
    director.tick(last_ts)
    return res
