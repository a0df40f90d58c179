"""pylvs._native: the C accelerator (sources in native/).  Every name here has a pure-Python twin of the
same signature in pylvs._pure (checksum.py, siphash.py, flowtable.py); pylvs.native picks one and says which.
"""

from typing import Any

from _typeshed import ReadableBuffer, WriteableBuffer

DESC_SIZE: int          # bytes per batch descriptor: struct pn_desc {u32 off; u32 len; i16 verdict; u16 reason}
ENTRY_SIZE: int         # bytes per flow entry (64)
MAX_INTERFACES: int     # interface indexes 0..MAX_INTERFACES-1
IN_CSUM_PARTIAL: int    # descriptor input flag: the L4 checksum is partial, complete it first

def csum_partial(data: ReadableBuffer, initial: int = 0) -> int:
    """Unfolded one's-complement sum of big-endian 16-bit words (RFC 1071); fold with csum_fold."""
def checksum(data: ReadableBuffer, initial: int = 0) -> int:
    """The RFC 1071 checksum of data plus an unfolded initial sum."""
def csum_fold(s: int) -> int:
    """Fold an unfolded sum to 16 bits and complement it."""
def pseudo_header_sum(src: ReadableBuffer, dst: ReadableBuffer, proto: int, length: int) -> int:
    """Unfolded TCP/UDP pseudo-header sum (RFC 793 §3.1)."""
def csum_replace2(check: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 update of a checksum for a changed 16-bit word."""
def csum_replace4(check: int, old: int, new: int) -> int:
    """RFC 1624 update for a changed aligned 32-bit field."""
def csum_replace_bytes(check: int, old: ReadableBuffer, new: ReadableBuffer) -> int:
    """RFC 1624 update for an even-aligned run of bytes of even length."""
def complete_checksum(frame: WriteableBuffer) -> bool:
    """Fill in the TCP/UDP checksum of a CHECKSUM_PARTIAL IPv4 frame in full; False if not such a frame."""
def siphash13(key: ReadableBuffer, data: ReadableBuffer) -> int:
    """SipHash-1-3 with a 16-byte key (the flow table's keyed hash)."""
def siphash24(key: ReadableBuffer, data: ReadableBuffer) -> int:
    """SipHash-2-4 with a 16-byte key (the reference variant, for test vectors)."""

class FlowTable:
    """Flows in fixed 64-byte entries allocated once, found from either direction through a keyed
    SipHash-1-3 chained hash, with a hard capacity, a time-driven expiry sweep, and the batched
    established-flow fast path.  Addresses are 4-byte ``bytes``; ports host-order ints; modes 0 nat,
    1 dr, 2 tun, 3 fullnat."""

    capacity: int
    key: bytes
    def __init__(self, capacity: int, key: bytes | None = None, dests: int = 4096) -> None: ...
    def __len__(self) -> int: ...
    def memory_bytes(self) -> int:
        """Bytes allocated for entries, chains, free list and counters (the C table; an estimate in the twin)."""
    def set_interface(self, index: int, mac: bytes, addr: bytes, mtu: int) -> None: ...
    def set_timeouts(self, tcp: float, udp: float) -> None:
        """Deadlines the fast path sets: now + tcp (ESTABLISHED) or now + udp."""
    def hash(self, proto: int, a: bytes, aport: int, b: bytes, bport: int) -> int: ...
    def insert(self, proto: int, caddr: bytes, cport: int, vaddr: bytes, vport: int, laddr: bytes, lport: int,
               daddr: bytes, dport: int, mode: int, has_out: bool, expires: float) -> int:
        """The new flow's slot; -1 when the table is full, -2 when a key is already in use."""
    def lookup(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> int:
        """slot << 1 | direction (0 inbound, 1 outbound) of the flow with that tuple, or -1."""
    def remove(self, slot: int) -> bool: ...
    def get(self, slot: int) -> dict[str, Any]:
        """All fields of a flow (KeyError for a free slot)."""
    def set_fast(self, slot: int, in_if: int, client_mac: bytes, out_if: int, rs_mac: bytes, dest_id: int,
                 toa_kind: int, state: int = ..., in_table: int = ..., toa_due: bool = ...) -> None:
        """Hand the flow to the fast path with where its packets go: its TCP state (IPVS's, STATES order;
        ESTABLISHED by default), the table its inbound packets use (0 INPUT, 2 INPUT_ONLY), and for FULLNAT
        whether the TOA (kind toa_kind) is still due in the handshake's last ACK."""
    def set_tcp_states(self, next: bytes, timeouts: list[float]) -> None:
        """IPVS's TCP tables (3 x 4 x 11 bytes: [table INPUT, OUTPUT, INPUT_ONLY][class syn fin ack rst][state]
        -> state) and each state's timeout: from then on the fast path moves its flows' TCP states itself."""
    def drain_events(self) -> list[int]:
        """What the fast path did to flows' books since the last call: slot << 8 | 0x80 (an output packet of
        a NOOUTPUT flow) | 0x40 (TOA inserted) | 0x20 (MSS clamped) | the new state (low 5 bits)."""
    def clear_fast(self, slot: int) -> None: ...
    def expires(self, slot: int) -> float: ...
    def set_expires(self, slot: int, t: float) -> None: ...
    def expire(self, now: float, budget: int = ...) -> list[int]:
        """Walk up to budget slots from the sweep cursor; remove and return those whose deadline passed."""
    def dest_counters(self, dest_id: int, reset: bool = False) -> tuple[int, int, int, int]:
        """(pkts_in, pkts_out, bytes_in, bytes_out) the fast path counted for a server."""
    def process(self, buf: WriteableBuffer, desc: WriteableBuffer, n: int, ifindex: int, now: float) -> int:
        """Forward the batch's established-flow frames in place; return how many were punted.  ``desc``
        must not share memory with ``buf``; a frame that may be TUN-encapsulated needs 20 bytes before it, one
        that may get a TOA 8."""
    def process_until_punt(self, buf: WriteableBuffer, desc: WriteableBuffer, n: int, ifindex: int,
                           now: float) -> int:
        """Complete every partial checksum, then process until right after the first punt; return how many
        descriptors were consumed (what Director.handle_batch calls, so punts are handled in order)."""
    def stats(self) -> dict[str, int]:
        """forwarded, and punt_<reason> for every reason."""
