"""IPVS schedulers: rr, wrr, sh, lc, wlc, mh.

Each class mirrors the Linux module ``net/netfilter/ipvs/ip_vs_<name>.c`` in
behaviour (not in code): same visiting order, same tie breaks, same hash
inputs.  Everything is deterministic: no randomness, no clock, and no Python
``hash()`` (randomised per process), so a replay or a fuzzer sees the same
choices on every run.

Contract shared by all schedulers:

* ``update(dests)`` is called whenever the list or any weight changes; it
  rebuilds tables (IPVS ``add_dest``/``del_dest``/``upd_dest``).
* ``pick(caddr, cport)`` returns a *usable* ``Dest`` (available, weight > 0)
  or ``None``; it never raises.  Dests are re-checked at pick time, so a weight
  changed without ``update()`` can only make a pick return ``None``, never a
  quiescent or removed server.
"""

from __future__ import annotations

from math import gcd

from .dest import Dest

__all__ = ["Scheduler", "RoundRobin", "WeightedRoundRobin", "SourceHashing", "LeastConnection",
           "WeightedLeastConnection", "MaglevHashing", "SCHEDULERS", "make_scheduler"]

_M32 = 0xFFFFFFFF
_GOLDEN_RATIO_32 = 0x61C88647  # include/linux/hash.h


def _addr_fold(addr: bytes) -> int:
    """IPVS ``addr_fold``: an IPv4 address as a host-order u32; for IPv6 the
    XOR of its four 32-bit words.  Other lengths are zero-padded and folded
    the same way so ``pick`` cannot raise on odd input."""
    if len(addr) == 4:
        return int.from_bytes(addr, "big")
    if len(addr) % 4:
        addr = addr + bytes(4 - len(addr) % 4)
    v = 0
    for i in range(0, len(addr), 4):
        v ^= int.from_bytes(addr[i:i + 4], "big")
    return v


def _hash_32(val: int, bits: int) -> int:
    """Kernel ``hash_32``: multiplicative hash, keep the high ``bits`` bits."""
    return ((val * _GOLDEN_RATIO_32) & _M32) >> (32 - bits)


def _hsiphash_u32(m: int, k0: int, k1: int, c_rounds: int = 1, d_rounds: int = 3) -> int:
    """HalfSipHash-c-d of one little-endian u32 (default 1-3: what the
    kernel's ``hsiphash(&v, 4, key)`` computes on 32-bit architectures; ip_vs_mh
    uses it).  Returns a u32.  The round counts are parameters only so the
    tests can check it against the reference HalfSipHash-2-4 vectors."""
    v0, v1 = k0, k1
    v2, v3 = 0x6C796765 ^ k0, 0x74656462 ^ k1

    def compress(v0: int, v1: int, v2: int, v3: int, rounds: int) -> tuple[int, int, int, int]:
        for _ in range(rounds):  # HSIPROUND
            v0 = (v0 + v1) & _M32; v1 = ((v1 << 5) | (v1 >> 27)) & _M32; v1 ^= v0
            v0 = ((v0 << 16) | (v0 >> 16)) & _M32
            v2 = (v2 + v3) & _M32; v3 = ((v3 << 8) | (v3 >> 24)) & _M32; v3 ^= v2
            v0 = (v0 + v3) & _M32; v3 = ((v3 << 7) | (v3 >> 25)) & _M32; v3 ^= v0
            v2 = (v2 + v1) & _M32; v1 = ((v1 << 13) | (v1 >> 19)) & _M32; v1 ^= v2
            v2 = ((v2 << 16) | (v2 >> 16)) & _M32
        return v0, v1, v2, v3

    for block in (m, 4 << 24):  # the message, then the length-only last block
        v3 ^= block
        v0, v1, v2, v3 = compress(v0, v1, v2, v3, c_rounds)
        v0 ^= block
    v2 ^= 0xFF
    v0, v1, v2, v3 = compress(v0, v1, v2, v3, d_rounds)
    return v1 ^ v3


class Scheduler:
    """Base class.  ``sh_port``/``sh_fallback`` are the ipvsadm flags
    ``sh-port``/``sh-fallback`` (also honoured by ``mh``, as ``mh-port`` and
    ``mh-fallback``); other schedulers ignore them."""

    name: str = ""

    def __init__(self, dests: list[Dest], *, sh_port: bool = False, sh_fallback: bool = False) -> None:
        self.sh_port = sh_port
        self.sh_fallback = sh_fallback
        self.dests: list[Dest] = []
        self.update(dests)

    def update(self, dests: list[Dest]) -> None:
        self.dests = list(dests)

    def pick(self, caddr: bytes, cport: int) -> Dest | None:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dests={len(self.dests)}>"


class RoundRobin(Scheduler):
    """ip_vs_rr: continue after the last chosen server, wrapping once around
    the list, skipping weight-0 (and removed) servers."""

    name = "rr"

    def __init__(self, dests: list[Dest], **kw: bool) -> None:
        self._pos = -1  # -1 = list head, like IPVS sched_data = &svc->destinations
        super().__init__(dests, **kw)

    def update(self, dests: list[Dest]) -> None:
        old, new = self.dests, list(dests)
        pos = -1
        if 0 <= self._pos < len(old):
            where = {id(d): i for i, d in enumerate(new)}
            # ip_vs_rr_del_dest: when the cursor's server is unlinked the
            # cursor moves to its predecessor, so the next pick is the server
            # that followed it.  Added servers do not move the cursor.
            for j in range(self._pos, -1, -1):
                i = where.get(id(old[j]))
                if i is not None:
                    pos = i
                    break
        self._pos = pos
        self.dests = new

    def pick(self, caddr: bytes, cport: int) -> Dest | None:
        dests = self.dests
        n = len(dests)
        for k in range(1, n + 1):
            i = (self._pos + k) % n
            d = dests[i]
            if d.usable:
                self._pos = i
                return d
        return None


class WeightedRoundRobin(Scheduler):
    """ip_vs_wrr: interleaved weighted round robin.

    The current weight ``cw`` starts at ``mw`` (max weight) and drops by
    ``di`` (gcd of the weights) each time the list is exhausted; a server is
    chosen when its weight >= cw.  One cycle therefore yields each server
    weight/gcd times, so any sum(weights) consecutive picks give each server
    exactly ``weight`` picks.  ``mw`` is max - (di - 1) as in IPVS, which is
    equivalent for cw stepping and keeps cw >= 1.
    """

    name = "wrr"

    def __init__(self, dests: list[Dest], **kw: bool) -> None:
        self._cl = -1   # index of the last chosen server; -1 = head
        self._cw = 0
        self._mw = 0
        self._di = 1
        super().__init__(dests, **kw)

    def update(self, dests: list[Dest]) -> None:
        self.dests = list(dests)
        weights = [d.weight for d in self.dests if d.usable]
        g = 0
        for w in weights:
            g = gcd(g, w)
        self._di = g or 1
        self._mw = (max(weights) if weights else 0) - (self._di - 1)
        # ip_vs_wrr_dest_changed: restart from the head but keep cw (clamped,
        # and realigned to the new gcd grid) so a weight tweak does not
        # restart the whole cycle at the heaviest server.
        self._cl = -1
        if self._cw > self._mw or not self._cw:
            self._cw = self._mw
        elif self._di > 1:
            self._cw = (self._cw // self._di) * self._di + 1

    def pick(self, caddr: bytes, cport: int) -> Dest | None:
        if self._mw <= 0:
            return None
        dests = self.dests
        n = len(dests)
        i = last = self._cl
        stop = None
        last_pass = restarted = False
        # Same termination rule as ip_vs_wrr_schedule: give up only after a
        # full traversal with cw <= di (i.e. looking for any weight >= 1).
        while True:
            for j in range(i + 1, n):
                d = dests[j]
                if d.available and d.weight >= self._cw:
                    self._cl = j
                    return d
                if j == stop:
                    self._cl = j
                    return None
            i = -1
            self._cw -= self._di
            if self._cw <= 0:
                self._cw = self._mw
                if last_pass or last == -1:
                    self._cl = -1
                    return None
                restarted = True
            last_pass = self._cw <= self._di
            if last_pass and restarted and last != -1:
                stop = last


class LeastConnection(Scheduler):
    """ip_vs_lc: smallest overhead (active*256 + inactive); the first server
    in list order wins ties (strict ``<``)."""

    name = "lc"

    def pick(self, caddr: bytes, cport: int) -> Dest | None:
        least, loh = None, 0
        for d in self.dests:
            if not d.usable:
                continue
            doh = d.overhead
            if least is None or doh < loh:
                least, loh = d, doh
        return least


class WeightedLeastConnection(Scheduler):
    """ip_vs_wlc: smallest overhead/weight, compared without division as
    ``loh * d.weight > doh * least.weight``; first in list order wins ties."""

    name = "wlc"

    def pick(self, caddr: bytes, cport: int) -> Dest | None:
        least, loh = None, 0
        for d in self.dests:
            if not d.usable:
                continue
            doh = d.overhead
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class _HashTable(Scheduler):
    """sh and mh: a table of servers indexed by a hash of the client, with the
    same IPVS fallback walk (``ip_vs_sh_get_fallback``/``ip_vs_mh_get_fallback``):
    rehash with offsets growing from the first slot until a usable server turns up.
    Subclasses fill ``_table``/``_members`` and define ``_slot(key, offset)``."""

    TAB_SIZE = 0

    def __init__(self, dests: list[Dest], **kw: bool) -> None:
        self._table: list[Dest] = []
        self._members: list[Dest] = []
        super().__init__(dests, **kw)

    def _slot(self, key: int, offset: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def pick(self, caddr: bytes, cport: int) -> Dest | None:
        table = self._table
        if not table:
            return None
        port = (cport & 0xFFFF) if self.sh_port else 0  # the sh-port / mh-port flag
        key = (port + _addr_fold(caddr)) & _M32
        ihash = self._slot(key, 0)
        d = table[ihash]
        if d.usable:
            return d
        if not self.sh_fallback:
            return None
        # Shortcut with the same result: with no usable server in the table the
        # probe loop below would run all TAB_SIZE hashes and fail.
        if not any(m.usable for m in self._members):
            return None
        for offset in range(self.TAB_SIZE):
            d = table[self._slot(key, (offset + ihash) % self.TAB_SIZE)]
            if d.usable:
                return d
        return None


class SourceHashing(_HashTable):
    """ip_vs_sh: 256 buckets indexed by hash_32(port + addr_fold, 8).

    ip_vs_sh_reassign walks the servers round-robin, each taking ``weight``
    consecutive buckets per round, until all 256 are filled.  Deviation from
    IPVS (by design brief): weight-0 servers are skipped here, whereas IPVS
    gives them one bucket per round (they then answer None / fall back).
    """

    name = "sh"
    TAB_BITS = 8
    TAB_SIZE = 1 << TAB_BITS
    TAB_MASK = TAB_SIZE - 1

    def update(self, dests: list[Dest]) -> None:
        self.dests = list(dests)
        live = [d for d in self.dests if d.usable]
        table: list[Dest] = []
        while live and len(table) < self.TAB_SIZE:
            for d in live:
                table.extend([d] * min(d.weight, self.TAB_SIZE - len(table)))
        self._table = table  # empty when nothing is usable
        self._members = live

    def _slot(self, fold_port: int, offset: int) -> int:
        # ip_vs_sh_hashkey: (offset + hash_32(port + addr_fold)) & mask
        return (offset + _hash_32(fold_port, self.TAB_BITS)) & self.TAB_MASK


class MaglevHashing(_HashTable):
    """ip_vs_mh: Maglev consistent hashing (NSDI'16, section 3.4).

    Each server gets a preference permutation of the table positions
    (offset, skip from two keyed hashes of its port + addr_fold); servers take
    turns claiming their next free preferred slot, ``turns`` slots per round,
    turns = last_weight / gcd >> rshift (rshift keeps turns within 8 bits).
    Like IPVS the table is built from ``last_weight`` (latest non-zero
    weight): quiescing a server (weight 0) keeps the table unchanged, and
    lookups hitting it return None or, with fallback, probe onward.
    """

    name = "mh"
    TAB_SIZE = 65537                  # prime (IPVS offers 251 .. 131071)
    TAB_BITS = 8                      # IPVS: ilog2(TAB_SIZE) / 2
    _KEY1 = (2654435761, 2654435761)  # generate_hash_secret() in ip_vs_mh.c
    _KEY2 = (2654446892, 2654446892)

    def __init__(self, dests: list[Dest], **kw: bool) -> None:
        self._last_weight: dict[Dest, int] = {}
        self._built_key: tuple | None = None
        super().__init__(dests, **kw)

    def update(self, dests: list[Dest]) -> None:
        self.dests = list(dests)
        present = [d for d in self.dests if d.available]
        lw: dict[Dest, int] = {}
        for d in present:
            # __ip_vs_update_dest: last_weight = weight on add, or later when
            # the new weight is non-zero.
            w = max(d.weight, 0)
            old = self._last_weight.get(d)
            lw[d] = w if (old is None or w) else old
        self._last_weight = lw
        # The table depends only on (server, port, addr, last_weight) in list
        # order: skip the (costly) rebuild when that did not change, e.g. when
        # a server is merely quiesced.  ids are safe: old and new lists are
        # both alive here.
        key = tuple((id(d), d.addr, d.port, lw[d]) for d in present)
        if key != self._built_key:
            self._build(present, [lw[d] for d in present])
            self._built_key = key

    def _build(self, present: list[Dest], lws: list[int]) -> None:
        M = self.TAB_SIZE
        g = 0
        for w in lws:
            g = gcd(g, w)
        if g < 1:  # no server with a weight: empty table (ip_vs_mh_reset)
            self._table, self._members = [], []
            return
        # ip_vs_mh_shift_weight: keep max(weight/gcd) within TAB_BITS bits
        shift = max(0, (max(lws) // g).bit_length() - self.TAB_BITS)
        members, perm, skip, turns = [], [], [], []
        for d, w in zip(present, lws):
            t = ((w // g) >> shift) or (1 if w else 0)
            if t < 1:
                continue  # "Ignore added server with zero weight"
            v = (d.port + _addr_fold(d.addr)) & _M32
            members.append(d)
            perm.append(_hsiphash_u32(v, *self._KEY1) % M)
            skip.append(_hsiphash_u32(v, *self._KEY2) % (M - 1) + 1)
            turns.append(t)
        # ip_vs_mh_populate, flattened: the hot loop is the collision walk.
        table: list = [None] * M
        filled = bytearray(M)
        n = 0
        while True:
            for k, d in enumerate(members):
                c, s = perm[k], skip[k]
                for _ in range(turns[k]):
                    while filled[c]:
                        c += s
                        if c >= M:
                            c -= M
                    filled[c] = 1
                    table[c] = d
                    n += 1
                    if n == M:
                        self._table, self._members = table, members
                        return
                perm[k] = c

    def _slot(self, key: int, offset: int) -> int:
        # ip_vs_mh_hashkey: hsiphash(offset + port + addr_fold) % TAB_SIZE
        return _hsiphash_u32((offset + key) & _M32, *self._KEY1) % self.TAB_SIZE


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (RoundRobin, WeightedRoundRobin, SourceHashing, LeastConnection,
                              WeightedLeastConnection, MaglevHashing)
}


def make_scheduler(name: str, dests: list[Dest], *, sh_port: bool = False,
                   sh_fallback: bool = False) -> Scheduler:
    """Build the scheduler called ``name`` (ipvsadm ``-s``); ValueError if unknown."""
    try:
        cls = SCHEDULERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SCHEDULERS))
        raise ValueError(f"unknown scheduler {name!r}; expected one of {known}") from None
    return cls(dests, sh_port=sh_port, sh_fallback=sh_fallback)
