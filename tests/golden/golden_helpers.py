"""Shared fixtures for the katran-style golden tests: lab constants, expected-frame
builders and a table-driven runner.

Every expected frame is built from field values with dpkt (through
``pylvs.testing`` or the small builders below), never by transforming what the
director produced, so byte equality also proves every checksum.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Callable, Union

import dpkt

from pylvs.config import load_config
from pylvs.core.pipeline import Director, Drop, Send, verdict
from pylvs.testing import ip4, mac

ROOT = pathlib.Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------ lab plan
C_MAC = "02:00:00:00:00:10"
D0_MAC = "02:00:00:00:01:01"  # director eth0 (client side)
D1_MAC = "02:00:00:00:01:02"  # director eth1 (server side)
CIP = "198.18.0.10"
DIP0 = "198.18.0.1"
DIP1 = "198.19.0.1"
VIP = "198.18.0.100"
LIP = "198.19.0.250"
RIP = {11: "198.19.0.11", 12: "198.19.0.12", 13: "198.19.0.13"}
RS_MAC = {11: "02:00:00:00:02:11", 12: "02:00:00:00:02:12", 13: "02:00:00:00:02:13"}

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# ------------------------------------------------------------------ TCP options
MSS1460 = b"\x02\x04\x05\xb4"
MSS1452 = b"\x02\x04\x05\xac"
SACKOK = b"\x04\x02"
WS7 = b"\x01\x03\x03\x07"  # NOP + window scale 7


def ts(val: int, ecr: int) -> bytes:
    return b"\x08\x0a" + val.to_bytes(4, "big") + ecr.to_bytes(4, "big")


def syn_opts(mss: bytes = MSS1460, tsval: int = 111, tsecr: int = 0) -> bytes:
    """Linux-style SYN options: MSS, SACK-permitted, timestamps, NOP, WS (20 bytes)."""
    return mss + SACKOK + ts(tsval, tsecr) + WS7


def ack_opts(tsval: int, tsecr: int) -> bytes:
    return b"\x01\x01" + ts(tsval, tsecr)


def toa(port: int, addr: str, kind: int = 254) -> bytes:
    return bytes((kind, 8)) + port.to_bytes(2, "big") + ip4(addr)


# ------------------------------------------------------------------ builders


def _b(m) -> bytes:
    return m if isinstance(m, bytes) else mac(m)


def eth(dst_mac, src_mac, ip: bytes) -> bytes:
    return _b(dst_mac) + _b(src_mac) + b"\x08\x00" + ip


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int, ident: int, tos: int = 0,
         df: bool = False) -> bytes:
    ip = dpkt.ip.IP(src=ip4(src), dst=ip4(dst), p=proto, ttl=ttl, id=ident, tos=tos, data=payload)
    ip.df = 1 if df else 0
    return bytes(ip)


def ipip_frame(dst_mac, src_mac, outer_src: str, outer_dst: str, inner_ip: bytes) -> bytes:
    """RFC 2003 encapsulation as the spec demands: protocol 4, outer TOS/TTL/DF
    copied from the inner header, outer ID = inner ID."""
    inner = dpkt.ip.IP(inner_ip)
    outer = ipv4(outer_src, outer_dst, 4, inner_ip, ttl=inner.ttl, ident=inner.id, tos=inner.tos,
                 df=bool(inner.df))
    return eth(dst_mac, src_mac, outer)


def director_icmp_error(dst_mac, src_mac, src: str, dst: str, icmp_type: int, code: int,
                        offending_ip: bytes, rest: int = 0, *, ident: int) -> bytes:
    """An ICMP error the director originates: RFC 1812 §4.3.2.3 quote (as much of
    the datagram as it received as fits in 576 bytes), TTL 64, DF clear, TOS 0xc0
    (Linux icmp_send: IPTOS_PREC_INTERNETCONTROL)."""
    quoted = offending_ip[:576 - 28]
    ic = dpkt.icmp.ICMP(type=icmp_type, code=code)
    ic.data = rest.to_bytes(4, "big") + quoted
    ic.sum = 0
    return eth(dst_mac, src_mac, ipv4(src, dst, 1, bytes(ic), ttl=64, ident=ident, tos=0xC0))


def ip_id(frame: bytes) -> int:
    return int.from_bytes(frame[18:20], "big")


def fresh(mode: str) -> Director:
    return Director(load_config(ROOT / "examples" / f"{mode}.toml"))


# ------------------------------------------------------------------ runner

Expected = Union[bytes, Callable[[bytes], bytes]]


@dataclass
class Step:
    """One input frame and everything the director must do with it.

    ``out`` lists ``(interface, frame)`` in order; a frame may be a callable
    that receives the actual frame (used only to learn the IP ID of a packet
    the director itself originates, an implementation-chosen counter).
    """

    name: str
    frame: bytes
    ifname: str
    now: float
    verdict: str
    out: list[tuple[str, Expected]] = field(default_factory=list)
    drop: str | None = None


def describe(frame: bytes) -> str:
    try:
        e = dpkt.ethernet.Ethernet(frame)
        return repr(e)
    except Exception as exc:  # pragma: no cover - diagnostics only
        return f"<undecodable: {exc}>"


def frame_diff(actual: bytes, expected: bytes) -> str:
    n = min(len(actual), len(expected))
    first = next((i for i in range(n) if actual[i] != expected[i]), n)
    return (f"first difference at byte {first} (len actual {len(actual)}, expected {len(expected)})\n"
            f"  actual  : {actual.hex()}\n  expected: {expected.hex()}\n"
            f"  actual  : {describe(actual)}\n  expected: {describe(expected)}")


def check(step: Step, actions) -> None:
    where = f"[{step.name}]"
    got = verdict(actions)
    assert got == step.verdict, f"{where} verdict {got!r} != {step.verdict!r}: {actions}"
    sends = [a for a in actions if isinstance(a, Send)]
    drops = [a.reason for a in actions if isinstance(a, Drop)]
    assert drops == ([step.drop] if step.drop else []), f"{where} drops {drops} != {step.drop!r}"
    assert len(sends) == len(step.out), f"{where} {len(sends)} frames sent, expected {len(step.out)}: {sends}"
    for i, (a, (ifname, exp)) in enumerate(zip(sends, step.out)):
        assert a.interface == ifname, f"{where} frame {i} out {a.interface}, expected {ifname}"
        actual = bytes(a.frame)
        want = exp(actual) if callable(exp) else exp
        assert actual == want, f"{where} frame {i}: " + frame_diff(actual, want)


def run(director: Director, steps: list[Step]) -> None:
    for s in steps:
        check(s, director.handle(s.frame, s.ifname, s.now))


def run_one(director: Director, step: Step) -> None:
    check(step, director.handle(step.frame, step.ifname, step.now))


def the_conn(director: Director):
    conns = list(director.table)
    assert len(conns) == 1, conns
    return conns[0]


def dest(director: Director, last_octet: int, port: int):
    """The runtime Dest for RS .<last_octet> in the service whose real port is ``port``."""
    for s in director.services:
        for d in s.dests:
            if d.addr == ip4(f"198.19.0.{last_octet}") and d.port == port:
                return d
    raise KeyError((last_octet, port))


def counts(director: Director, port: int) -> dict[int, tuple[int, int]]:
    """{last octet: (active, inactive)} for the service whose real port is ``port``."""
    return {o: (dest(director, o, port).active, dest(director, o, port).inactive) for o in (11, 12, 13)}
