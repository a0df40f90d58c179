"""The live runner: ports' file descriptors on an asyncio loop (uvloop when installed), frames into the
sans-I/O core, its actions out again, and the core's timers.

Thin on purpose.  The core (:class:`pylvs.core.pipeline.Director`) decides everything; this module only
moves bytes and time:

- each port's fd is registered with ``add_reader``; a readable callback drains up to ``batch`` frames
  (level-triggered: if more are queued the loop calls back at once, and other ports get their turn);
- ``Send`` actions are written to the named port at once; ``Drop``/``Hold``/``Absorb`` are already counted
  by the core;
- a periodic timer calls ``Director.tick`` (flow and template expiry, ARP retries: IPVS runs its expiry
  from timers too);
- SIGTERM/SIGINT set the stop event; on the way out every port is closed and the counters are logged.
"""

from __future__ import annotations

import array
import asyncio
import gc
import logging
import signal
import time
from typing import Callable

from pylvs import native
from pylvs._pure.io import TX_COUNTERS
from pylvs.control import sdnotify
from pylvs.core.batch import Batch
from pylvs.core.pipeline import Send
from pylvs.logsetup import RateLimited

log = logging.getLogger("pylvs.loop")

TICK_INTERVAL = 0.25  # seconds; ARP retries are 1 s apart, timeouts are seconds to minutes
#: New connections between two gc.freeze() calls (see Runner.gc_step): the bound on what a full collection
#: walks, so on its pauses.
FREEZE_EVERY = 65536


def new_event_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop when installed, the default loop otherwise; returns the loop and a name for the logs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio (uvloop not installed)"
    return uvloop.new_event_loop(), f"uvloop {uvloop.__version__}"


class Runner:
    def __init__(self, director, ports: dict, *, batch: int = 64,
                 clock: Callable[[], float] = time.monotonic, control=None,
                 refilter: Callable[[], None] | None = None) -> None:
        self.director = director
        self.ports = ports
        self.batch = batch
        self.clock = clock
        #: the control plane (pylvs.control.plane.ControlPlane) or None
        self.control = control
        #: rebuilds the ports' kernel filters when the director's addresses change (a reload)
        self.refilter = refilter
        self._addrs_version = director.addrs_version
        self._frozen_at = 0  # conns_created at the last gc.freeze()
        self.unknown_port_sends = 0
        self._last_drop_warning = float("-inf")
        self._errors = RateLimited(log, 10.0)
        # The fast path names egress interfaces by index: their descriptors (-1: no port here) and the
        # per-index send counters native.tx_run keeps (folded into the ports' counters by summary()).
        names = director.fast.ifnames
        self._fds = array.array("i", [ports[n].fileno() if n in ports else -1 for n in names] or [-1])
        # Which of them take virtio-net headers: GSO super-frames and partial checksums go out whole there.
        self._vnet = bytes(bool(n in ports and ports[n].offload) for n in names) or b"\0"
        for n in names:
            director.fast.set_offload(n, n in ports and ports[n].offload)
        self._tx = array.array("Q", bytes(8 * len(TX_COUNTERS) * len(self._fds)))
        # One batch buffer per port: the fast path's input (64 KB slots where super-frames arrive).
        self._batches = {p.name: Batch(batch, p.frame_room) for p in ports.values()}

    # One batch from one port.  Called by the loop when the fd is readable.
    def _readable(self, port) -> None:
        """Frames land in one buffer; the fast path forwards what it can in place, the rest are punted to
        the slow path; sends go out in arrival order."""
        batch = self._batches[port.name]
        n = port.recv_into_batch(batch, self.batch)
        if not n:
            return
        now = self.clock()
        try:
            punted = self.director.handle_batch(batch.buf, batch.desc, n, port.name, now)
        except Exception:  # never expected (handle_batch guards each punt); the datapath keeps going
            self.director.drops["internal_error"] += n
            log.exception("internal error on a batch from %s (dropped)", port.name)
            return
        err = self.director.last_internal_error
        if err is not None:
            self.director.last_internal_error = None
            self._errors.error(now, "internal error on a frame from %s (dropped; counted as internal_error): "
                               "%r", port.name, err)
        actions = dict(punted)
        # Runs of forwarded frames go out with one sendmmsg per egress (native.tx_run, or its twin).  The
        # slow path's frames for the punted ones are gathered per port and sent together (send_many) just
        # before the next run of forwarded frames, so every port still sends in arrival order.
        i, tx_run = 0, native.tx_run
        pending: dict = {}
        while i < n:
            if i not in actions:  # forwarded by the fast path: send the run that starts here
                if pending:
                    self._flush(pending)
                j = tx_run(self._fds, self._vnet, batch.buf, batch.desc, i, n, self._tx)
                i = j if j > i else i + 1  # never stall on a descriptor nobody accounted for
                continue
            for a in actions[i]:
                if isinstance(a, Send):
                    port = self.ports.get(a.interface)
                    if port is None:
                        self.unknown_port_sends += 1
                    else:
                        pending.setdefault(port, []).append(a.frame)
            i += 1
        if pending:
            self._flush(pending)

    @staticmethod
    def _flush(pending: dict) -> None:
        for port, frames in pending.items():
            port.send_many(frames)
        pending.clear()

    def _do(self, actions) -> None:
        for a in actions:
            if isinstance(a, Send):
                port = self.ports.get(a.interface)
                if port is None:
                    self.unknown_port_sends += 1
                    continue
                port.send(a.frame)

    def gc_step(self) -> bool:
        """Keep CPython's full collections short with a large connection table.  Every flow is a few
        GC-tracked objects; a full collection walks all of them (about 1 s with a million flows here), and
        one runs each time the long-lived set has grown by a quarter, so a filling table stalls the whole
        datapath for seconds, ever longer.  gc.freeze() (O(1): a list splice) moves what is alive now out of
        the collector's sight: after every FREEZE_EVERY new connections, so a full collection never walks more
        than that many flows' objects.  Frozen objects are still freed by reference counting when they die
        (flows hold no reference cycles); only a cycle alive at a freeze and dropped later is never
        reclaimed.  Returns whether it froze."""
        created = self.director.events["conns_created"]
        if created - self._frozen_at < FREEZE_EVERY:
            return False
        self._frozen_at = created
        gc.freeze()
        return True

    def _tick(self) -> None:
        now = self.clock()
        self.gc_step()
        try:
            self._do(self.director.tick(now))
            if self.control is not None:
                self.control.tick(now)
            if self.director.addrs_version != self._addrs_version:
                self.addresses_changed()
        except Exception:
            log.exception("internal error in the timer (continuing)")
        self._poll_kernel_drops()

    def addresses_changed(self) -> None:
        """The director owns other addresses now (a reload, a retired VIP's last flow gone)."""
        self._addrs_version = self.director.addrs_version
        if self.refilter is not None:
            self.refilter()

    def _poll_kernel_drops(self) -> None:
        """Receive-queue overflows happen in the kernel, before pylvs sees a frame: count and say so."""
        for p in self.ports.values():
            poll = getattr(p, "poll_kernel_stats", None)
            if poll is None:
                continue
            drops = poll()
            now = self.clock()
            if drops and now - self._last_drop_warning >= 10.0:
                self._last_drop_warning = now
                log.warning("%s: the kernel dropped %d frames: pylvs's receive queue was full "
                            "(rx_kernel_drops; the CPU cannot keep up)", p.name, drops)

    async def serve(self, stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self.control is not None:
            self.control.on_addresses_changed = self.addresses_changed
            await self.control.start()
        for p in self.ports.values():
            loop.add_reader(p.fileno(), self._readable, p)
        try:
            if on_ready is not None:
                on_ready()
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), TICK_INTERVAL)
                except asyncio.TimeoutError:
                    pass
                self._tick()
        finally:
            for p in self.ports.values():
                loop.remove_reader(p.fileno())
            if self.control is not None:
                await self.control.close()

    def _fold_tx(self) -> None:
        for idx, name in enumerate(self.director.fast.ifnames):
            port = self.ports.get(name)
            for k, cname in enumerate(TX_COUNTERS):
                v = self._tx[len(TX_COUNTERS) * idx + k]
                if v and port is not None:
                    port.counters[cname] += v
                self._tx[len(TX_COUNTERS) * idx + k] = 0

    def summary(self) -> dict:
        self._fold_tx()
        self._poll_kernel_drops()
        st = self.director.stats()
        st["ports"] = {n: dict(p.counters) for n, p in self.ports.items()}
        if self.unknown_port_sends:
            st["drops"]["send_unknown_interface"] = self.unknown_port_sends
        return st


def run(director, ports: dict, *, on_ready: Callable[[], None] | None = None,
        stop_after: float | None = None, control_factory: Callable[[str], object] | None = None,
        refilter: Callable[[], None] | None = None) -> dict:
    """Run until SIGTERM/SIGINT (or ``stop_after`` seconds); close the ports; return the final stats.

    ``control_factory(event_loop_name)`` builds the control plane; SIGHUP then reloads the configuration."""
    loop, loop_name = new_event_loop()
    control = control_factory(loop_name) if control_factory is not None else None
    runner = Runner(director, ports, control=control, refilter=refilter)
    log.info("event loop: %s", loop_name)
    sigs = [signal.SIGTERM, signal.SIGINT]
    try:
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()

        def stopping() -> None:
            sdnotify.notify("STOPPING=1")
            stop.set()

        for sig in sigs:
            loop.add_signal_handler(sig, stopping)
        if control is not None:
            loop.add_signal_handler(signal.SIGHUP, control.reload)
            sigs.append(signal.SIGHUP)
        if stop_after is not None:
            loop.call_later(stop_after, stop.set)
        loop.run_until_complete(runner.serve(stop, on_ready=on_ready))
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
        for p in ports.values():
            p.close()
        loop.close()
        asyncio.set_event_loop(None)
    return runner.summary()
