"""Next hops: connected subnets, configured routes, and the neighbour (ARP) table.

Longest-prefix match over a handful of prefixes, cached per destination.  The
neighbour table holds static entries from the config plus what ARP taught us;
packets toward an unresolved next hop wait in a bounded per-neighbour queue
while ARP requests go out (like the kernel's ``unres_qlen``), and are dropped
and counted when resolution gives up.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

#: ARP retries before the queue is given up (Linux ``mcast_solicit`` is 3).
ARP_TRIES = 3
#: seconds between ARP requests for the same neighbour (Linux ``retrans_time``).
ARP_RETRANS = 1.0


@dataclass
class Iface:
    name: str
    mac: bytes
    mtu: int
    addrs: list[bytes]                    # packed host addresses on this link
    nets: list[ipaddress.IPv4Network]      # connected subnets

    @property
    def primary(self) -> bytes:
        return self.addrs[0]


@dataclass
class Pending:
    frames: list[bytearray] = field(default_factory=list)
    tries: int = 0
    last: float = float("-inf")


class Routes:
    def __init__(self, ifaces: dict[str, Iface], routes) -> None:
        entries = []
        for ifc in ifaces.values():
            for net in ifc.nets:
                entries.append((net, None, ifc.name))
        for r in routes:
            entries.append((r.prefix, r.via.packed if r.via is not None else None, r.interface))
        # longest prefix first; stable for equal lengths (config order)
        entries.sort(key=lambda e: -e[0].prefixlen)
        self._entries = [(int(n.network_address), int(n.netmask), via, ifn) for n, via, ifn in entries]
        self._cache: dict[bytes, tuple[str, bytes] | None] = {}

    def lookup(self, dst: bytes) -> tuple[str, bytes] | None:
        """(egress interface, next-hop address) for ``dst``, or None."""
        try:
            return self._cache[dst]
        except KeyError:
            pass
        d = int.from_bytes(dst, "big")
        hit = None
        for net, mask, via, ifn in self._entries:
            if d & mask == net:
                hit = (ifn, via if via is not None else dst)
                break
        if len(self._cache) > 65536:
            self._cache.clear()
        self._cache[dst] = hit
        return hit

    def on_link(self, dst: bytes) -> str | None:
        """The interface whose connected subnet holds ``dst`` (DR needs L2 adjacency)."""
        hit = self.lookup(dst)
        if hit is not None and hit[1] == dst:
            return hit[0]
        return None


class Neighbors:
    def __init__(self, static, queue_limit: int) -> None:
        self._macs: dict[tuple[str, bytes], bytes] = {}
        self._static: set[tuple[str, bytes]] = set()
        for n in static:
            key = (n.interface, n.address.packed)
            self._macs[key] = n.mac
            self._static.add(key)
        self.queue_limit = queue_limit
        self.pending: dict[tuple[str, bytes], Pending] = {}

    def get(self, ifname: str, addr: bytes) -> bytes | None:
        return self._macs.get((ifname, addr))

    def set_static(self, static) -> None:
        """A reload's static entries: those gone are forgotten (ARP finds them again), new ones win."""
        new = {(n.interface, n.address.packed): n.mac for n in static}
        for key in self._static - new.keys():
            del self._macs[key]
        self._static = set(new)
        self._macs.update(new)

    def learn(self, ifname: str, addr: bytes, mac: bytes) -> list[bytearray]:
        """Record ``addr`` → ``mac``; returns frames that were waiting for it."""
        key = (ifname, addr)
        if key not in self._static:
            self._macs[key] = mac
        pend = self.pending.pop(key, None)
        return pend.frames if pend is not None else []
