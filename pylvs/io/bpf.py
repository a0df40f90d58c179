"""The classic BPF filter pylvs attaches to each AF_PACKET socket, and a tiny interpreter to test it.

Without a kernel-side filter every frame on the segment (the director's own management traffic, other
hosts' broadcasts, IPv6 chatter) would cross into Python just to be dropped.  The program passes only:

- frames the kernel would deliver to this host (never PACKET_OUTGOING: our own transmissions come back to
  an ETH_P_ALL socket; never PACKET_OTHERHOST unless pylvs uses a MAC the NIC does not own and runs the
  socket promiscuous);
- ARP (pylvs answers for VIPs, LIPs and its own addresses and learns neighbours);
- IPv4 ICMP (errors about tracked flows are addressed to clients or servers, not to us; echo to VIP/LIP/DIP);
- IPv4 to an address pylvs owns (VIPs, LIPs, DIPs), and IPv4 *from* a NAT real server (its replies are
  addressed to the client and must be rewritten back: IPVS ``ip_vs_out``).

Each address test is ``jeq #addr, 0, 1`` followed by ``ret #ACCEPT``, so no jump ever spans more than one
instruction and the 8-bit jump offsets cannot overflow however many addresses there are (up to the
kernel's BPF_MAXINSNS = 4096 instructions).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import Iterable, NamedTuple

# linux/filter.h opcodes (only those used here).
LD_W_ABS = 0x20   # A = u32 at k
LD_H_ABS = 0x28   # A = u16 at k
LD_B_ABS = 0x30   # A = u8 at k
JEQ_K = 0x15      # if A == k: pc += jt else pc += jf
RET_K = 0x06
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
SO_ATTACH_FILTER = 26
BPF_MAXINSNS = 4096

PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4
ACCEPT = 0x40000  # snap length: whole frame (TSO super-frames are dealt with upstream, see io/ethtool.py)


class Insn(NamedTuple):
    code: int
    jt: int
    jf: int
    k: int


def program(dst_addrs: Iterable[bytes], src_addrs: Iterable[bytes], *, promisc: bool = False,
            host_addrs: Iterable[bytes] = ()) -> list[Insn]:
    """Build the filter.  Addresses are 4-byte packed IPv4.  ``host_addrs`` are the kernel's own addresses
    on the interface (e.g. the one health checks are sent from): IPv4 to them is the kernel's business
    and never reaches pylvs, even from a NAT real server (its answers to a check)."""
    p: list[Insn] = [
        Insn(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF),
        Insn(JEQ_K, 0, 1, PACKET_OUTGOING),
        Insn(RET_K, 0, 0, 0),
    ]
    if not promisc:
        p += [Insn(JEQ_K, 0, 1, PACKET_OTHERHOST), Insn(RET_K, 0, 0, 0)]
    p += [
        Insn(LD_H_ABS, 0, 0, 12),            # ethertype
        Insn(JEQ_K, 0, 1, 0x0806),
        Insn(RET_K, 0, 0, ACCEPT),
        Insn(JEQ_K, 1, 0, 0x0800),
        Insn(RET_K, 0, 0, 0),
    ]
    host = sorted(set(host_addrs))
    if host:
        p.append(Insn(LD_W_ABS, 0, 0, 30))
        for a in host:
            p += [Insn(JEQ_K, 0, 1, int.from_bytes(a, "big")), Insn(RET_K, 0, 0, 0)]
    p += [
        Insn(LD_B_ABS, 0, 0, 23),            # IPv4 protocol
        Insn(JEQ_K, 0, 1, socket.IPPROTO_ICMP),
        Insn(RET_K, 0, 0, ACCEPT),
    ]
    for offset, addrs in ((30, dst_addrs), (26, src_addrs)):
        addrs = sorted(set(addrs))
        if not addrs:
            continue
        p.append(Insn(LD_W_ABS, 0, 0, offset))
        for a in addrs:
            p += [Insn(JEQ_K, 0, 1, int.from_bytes(a, "big")), Insn(RET_K, 0, 0, ACCEPT)]
    p.append(Insn(RET_K, 0, 0, 0))
    if len(p) > BPF_MAXINSNS:
        raise ValueError(f"BPF filter needs {len(p)} instructions (kernel limit {BPF_MAXINSNS}): "
                         "too many VIPs/LIPs/NAT real servers on one interface")
    return p


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """SO_ATTACH_FILTER: ``struct sock_fprog { u16 len; struct sock_filter *filter; }``."""
    raw = b"".join(struct.pack("=HBBI", i.code, i.jt, i.jf, i.k) for i in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))  # native alignment pads len to 8 bytes
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def run(prog: list[Insn], frame: bytes, pkttype: int = 0) -> int:
    """Interpret ``prog`` over ``frame`` the way the kernel does (for tests): the snap length, 0 = drop.

    A load past the end of the frame makes the kernel's filter return 0; so does this."""
    a = 0
    pc = 0
    for _ in range(len(prog) + 1):  # no backward jumps in classic BPF: bounded
        ins = prog[pc]
        if ins.code in (LD_W_ABS, LD_H_ABS, LD_B_ABS):
            size = {LD_W_ABS: 4, LD_H_ABS: 2, LD_B_ABS: 1}[ins.code]
            k = ins.k - (1 << 32) if ins.k & 0x80000000 else ins.k
            if k == SKF_AD_OFF + SKF_AD_PKTTYPE:
                a = pkttype
            elif 0 <= k and k + size <= len(frame):
                a = int.from_bytes(frame[k:k + size], "big")
            else:
                return 0
            pc += 1
        elif ins.code == JEQ_K:
            pc += 1 + (ins.jt if a == ins.k else ins.jf)
        elif ins.code == RET_K:
            return ins.k
        else:  # pragma: no cover - program() emits nothing else
            raise ValueError(f"opcode {ins.code:#x}")
    raise AssertionError("BPF program ran off its end")  # pragma: no cover
