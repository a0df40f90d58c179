"""Runtime state of a real server (IPVS ``struct ip_vs_dest``).

The config's ``RealServer`` is immutable; a ``Dest`` is what the datapath and the
schedulers share at run time: the current weight (0 = quiescent), whether it is
still part of the service, and the connection counts ``lc``/``wlc`` weigh.

Three inputs decide the two values the datapath reads (:meth:`Dest.settle`), as one table:

=================  ===================  =========  ===========================
present (config)   admin state          health     -> available, weight
=================  ===================  =========  ===========================
no                 any                  any        False, 0 (removed: IPVS trash)
yes                maint                any        False, 0 (as if removed)
yes                ready / drain        down+remove False, 0 (keepalived, no inhibit)
yes                drain                any        True, 0 (quiescent)
yes                ready                down+quiesce True, 0 (inhibit_on_failure)
yes                ready                up / none  True, configured weight
=================  ===================  =========  ===========================

An unavailable server's flows follow the service's ``expire_nodest_conn``; a weight-0 one's go on.
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
    #: the configured weight (``weight`` is the effective one)
    cfg_weight: int = -1
    #: part of the service's configuration (False: removed, kept alive only by its flows)
    present: bool = True
    #: administrative state: "ready", "drain" or "maint"
    admin: str = "ready"
    #: health: None = not checked, else the last verdict of its check
    healthy: bool | None = None
    #: what a failed check does: "quiesce" (weight 0) or "remove"
    on_failure: str = "quiesce"

    def __post_init__(self) -> None:
        if self.cfg_weight < 0:
            self.cfg_weight = self.weight

    def settle(self) -> None:
        """Derive ``available`` and ``weight`` from the inputs (the table in the module docstring)."""
        down = self.healthy is False
        self.available = self.present and self.admin != "maint" and not (down and self.on_failure == "remove")
        self.weight = self.cfg_weight if self.available and self.admin == "ready" and not down else 0

    @property
    def health(self) -> str:
        return "unchecked" if self.healthy is None else "up" if self.healthy else "down"

    @property
    def overhead(self) -> int:
        """IPVS ``ip_vs_dest_conn_overhead``: active × 256 + inactive."""
        return (self.active << 8) + self.inactive

    @property
    def usable(self) -> bool:
        """Can take *new* connections: present and weight > 0."""
        return self.available and self.weight > 0
