"""Runtime state of a real server (IPVS ``struct ip_vs_dest``).

The config's ``RealServer`` is immutable; a ``Dest`` is what the datapath and the
schedulers share at run time: the current weight (0 = quiescent), whether it is
still part of the service, and the connection counts ``lc``/``wlc`` weigh.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Dest:
    """One real server of one service.

    ``addr`` is the packed address (4 bytes for IPv4, 16 for IPv6), so nothing
    here is IPv4-only.  ``mode`` is the effective forwarding mode for flows to
    this server ("nat", "dr", "tun" or "fullnat").
    """

    addr: bytes
    port: int
    weight: int
    mode: str
    #: False once removed from the service (kept alive only by its flows).
    available: bool = True
    #: IPVS counts a connection as active only in TCP ESTABLISHED.
    active: int = 0
    inactive: int = 0
    #: persistence templates pointing at this server
    persist: int = 0
    # traffic counters (ipvsadm --stats)
    conns: int = 0
    pkts_in: int = 0
    pkts_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    #: free-form label for logs (e.g. "198.19.0.11:8080")
    label: str = field(default="")
    #: index of this server's counters in the fast path's flow table (set by the Director)
    fid: int = 0

    @property
    def overhead(self) -> int:
        """IPVS ``ip_vs_dest_conn_overhead``: active × 256 + inactive."""
        return (self.active << 8) + self.inactive

    @property
    def usable(self) -> bool:
        """Can take *new* connections: present and weight > 0."""
        return self.available and self.weight > 0
