"""A scripted lab conversation: the frames a director receives when a client
talks TCP (HTTP-like) and UDP to the VIP and the real servers answer.

The script plays client and servers against a live :class:`Director`: it
sends the client's frames, reads what the director forwards (to learn which
server, real port and — in FULLNAT — which local address/port it chose), and
answers as that server would.  Replies cross the director only in NAT and
FULLNAT; in DR and TUN the servers answer the client directly, off the
director's links, so those replies are not part of its input.

It builds ``examples/captures/<mode>.pcap`` (the input of ``pylvs demo``) and
drives the end-to-end tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import dpkt

from pylvs.core.pipeline import Director, Send
from pylvs.testing import arp_frame, icmp_frame, mac, tcp_frame, udp_frame

CLIENT_MAC = "02:00:00:00:00:10"
CLIENT_IP = "198.18.0.10"
VIP = "198.18.0.100"
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
MSS_1460 = b"\x02\x04\x05\xb4\x01\x01\x04\x02"  # MSS 1460, NOP, NOP, SACK-permitted


@dataclass
class Recorded:
    """Everything the director received (``inputs``) and sent (``outputs``)."""

    inputs: list[tuple[float, str, bytes]] = field(default_factory=list)
    outputs: list[tuple[float, str, bytes]] = field(default_factory=list)


class Lab:
    def __init__(self, director: Director) -> None:
        self.d = director
        self.t = 1_700_000_000.0
        self.rec = Recorded()
        self.eth0 = director.ifaces["eth0"].mac
        self.eth1 = director.ifaces["eth1"].mac

    def feed(self, frame: bytes, ifname: str) -> list[Send]:
        self.t += 0.001
        self.rec.inputs.append((self.t, ifname, frame))
        sends = [a for a in self.d.handle(frame, ifname, self.t) if isinstance(a, Send)]
        for a in sends:
            self.rec.outputs.append((self.t, a.interface, a.frame))
        return sends

    @staticmethod
    def _ip(frame: bytes) -> dpkt.ip.IP:
        ip = dpkt.ethernet.Ethernet(frame).data
        if isinstance(ip, dpkt.ip.IP) and ip.p == 4:  # IPIP: look at the inner packet
            ip = dpkt.ip.IP(bytes(ip.data)) if not isinstance(ip.data, dpkt.ip.IP) else ip.data
        return ip

    def _server_reply(self, fwd: Send, flags: int, seq: int, ack: int, payload: bytes = b"",
                      opts: bytes = b"") -> list[Send]:
        """The RS answers the packet it got; only NAT/FULLNAT replies reach the director."""
        ip = self._ip(fwd.frame)
        eth = dpkt.ethernet.Ethernet(fwd.frame)
        rs_ip = dpkt.utils.inet_to_str(ip.dst)
        if rs_ip == VIP:  # DR/TUN: the RS owns the VIP and answers the client directly
            return []
        t = ip.data
        frame = tcp_frame(eth.dst, self.eth1, rs_ip, dpkt.utils.inet_to_str(ip.src), t.dport, t.sport, flags,
                          seq=seq, ack=ack, payload=payload, opts=opts, ident=seq & 0xFFFF)
        return self.feed(frame, "eth1")

    def tcp_session(self, cport: int, request: bytes = b"GET / HTTP/1.0\r\n\r\n") -> None:
        c_isn, s_isn = 1000 * cport, 5000 * cport & 0xFFFFFFFF
        c = lambda fl, seq, ack, pl=b"", opts=b"": self.feed(  # noqa: E731
            tcp_frame(CLIENT_MAC, self.eth0, CLIENT_IP, VIP, cport, 80, fl, seq=seq, ack=ack, payload=pl,
                      opts=opts, ident=seq & 0xFFFF), "eth0")
        out = c(SYN, c_isn, 0, opts=MSS_1460)
        if not out:
            return
        syn_fwd = out[0]
        body = b"HTTP/1.0 200 OK\r\n\r\nhello from " + dpkt.utils.inet_to_str(self._ip(syn_fwd.frame).dst).encode()
        self._server_reply(syn_fwd, SYN | ACK, s_isn, c_isn + 1, opts=MSS_1460)
        c(ACK, c_isn + 1, s_isn + 1)
        req = c(PSH | ACK, c_isn + 1, s_isn + 1, request)
        c_next = c_isn + 1 + len(request)
        if req:
            self._server_reply(req[0], PSH | ACK, s_isn + 1, c_next, body)
            self._server_reply(req[0], FIN | ACK, s_isn + 1 + len(body), c_next)
        c(FIN | ACK, c_next, s_isn + 2 + len(body))
        if req:
            self._server_reply(req[0], ACK, s_isn + 2 + len(body), c_next + 1)

    def udp_exchange(self, cport: int, payload: bytes) -> None:
        out = self.feed(udp_frame(CLIENT_MAC, self.eth0, CLIENT_IP, VIP, cport, 53, payload, ident=cport), "eth0")
        if not out:
            return
        ip = self._ip(out[0].frame)
        if dpkt.utils.inet_to_str(ip.dst) == VIP:
            return  # DR/TUN: the answer goes straight to the client
        u = ip.data
        rs_ip = dpkt.utils.inet_to_str(ip.dst)
        self.feed(udp_frame(dpkt.ethernet.Ethernet(out[0].frame).dst, self.eth1, rs_ip,
                            dpkt.utils.inet_to_str(ip.src), u.dport, u.sport, b"echo:" + payload,
                            ident=cport + 1), "eth1")

    def run(self, tcp_sessions: int = 4, udp_queries: int = 3) -> Recorded:
        # The client (or its router) asks who has the VIP.
        self.feed(arp_frame(CLIENT_MAC, "ff:ff:ff:ff:ff:ff", 1, CLIENT_MAC, CLIENT_IP, "00:00:00:00:00:00", VIP),
                  "eth0")
        for i in range(tcp_sessions):
            self.tcp_session(40000 + i)
        for i in range(udp_queries):
            self.udp_exchange(50000 + i, b"query-%d" % i)
        # A ping to the VIP, and two frames that must be dropped and counted.
        self.feed(icmp_frame(CLIENT_MAC, self.eth0, CLIENT_IP, VIP, 8, 0, struct.pack("!HH", 7, 1) + b"ping"),
                  "eth0")
        bad = bytearray(tcp_frame(CLIENT_MAC, self.eth0, CLIENT_IP, VIP, 40999, 80, SYN))
        bad[24] ^= 0xFF  # corrupt the IP header checksum
        self.feed(bytes(bad), "eth0")
        self.feed(tcp_frame(CLIENT_MAC, self.eth0, CLIENT_IP, VIP, 40998, 80, ACK, seq=1, ack=1), "eth0")
        return self.rec


def record(director: Director, **kw) -> Recorded:
    return Lab(director).run(**kw)


__all__ = ["Lab", "Recorded", "record", "mac"]
