"""``pylvs run``: open the config's interfaces, build the director, optionally set the host up, forward.

Order matters and is chosen so a failure leaves nothing behind:

1. open every port (a missing interface, missing privileges or a busy TAP name stops here, before any
   host change);
2. build the :class:`~pylvs.core.pipeline.Director` with the MACs the ports really use;
3. apply the host recipe if asked (``--host-setup``), undone at exit whatever happens (a SIGTERM during
   start-up unwinds through the same clean-up; one during the undo is ignored);
4. attach each AF_PACKET socket's BPF filter for the director's addresses, then start receiving;
5. print ``ready`` and run the loop until SIGTERM/SIGINT; close ports; log and optionally write counters.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

from pylvs import native
from pylvs.control import sdnotify
from pylvs.control.plane import ControlPlane
from pylvs.io.port import PortError

log = logging.getLogger("pylvs")


class LiveError(Exception):
    """A clear, user-facing reason why live forwarding could not start."""


def open_ports(cfg, *, offload: bool = True) -> dict:
    """One port per configured interface; ``offload``: AF_PACKET ports ask for virtio-net headers."""
    from pylvs.io.afpacket import AfPacketPort
    from pylvs.io.tap import TapPort

    ports: dict = {}
    try:
        for ic in cfg.interfaces:
            ports[ic.name] = (TapPort.open if ic.driver == "tap" else AfPacketPort.open)(ic, offload=offload)
    except PortError as e:
        for p in ports.values():
            p.close()
        raise LiveError(f"{cfg.file}: {e}") from None
    except BaseException:
        for p in ports.values():
            p.close()
        raise
    return ports


def nat_real_servers(cfg) -> set[bytes]:
    """Sources whose packets must reach us although not addressed to us: NAT real servers' replies."""
    return {rs.address.packed for vs in cfg.virtual_servers for rs in vs.real_servers if rs.mode == "nat"}


def _exit_on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    # During start-up a SIGTERM must unwind through the finally blocks (closing ports, undoing the host
    # recipe) rather than kill the process with the host half set up.
    raise SystemExit(128 + signum)


def bpf_addresses(director, cfg) -> tuple[set[bytes], set[bytes]]:
    """IPv4 destinations and sources the AF_PACKET filter passes (IPv6 is not forwarded yet)."""
    dst = {a for a in director.local_addrs if len(a) == 4}
    return dst, {a for a in nat_real_servers(cfg) if len(a) == 4}


def host_addresses() -> dict[str, set[bytes]]:
    """The kernel's own IPv4 addresses per interface (health checks leave from them; pylvs ignores
    traffic to them).  Empty if netlink cannot be read."""
    from pylvs.io import hostsetup

    try:
        return {n: {a.ip.packed for a in addrs} for n, addrs in hostsetup.kernel_addresses().items()}
    except hostsetup.HostSetupError as e:
        log.warning("%s; traffic to the kernel's own addresses will reach pylvs (and be counted as drops)", e)
        return {}


def _refilter(director, ports: dict, host: dict[str, set[bytes]]) -> None:
    dst, src = bpf_addresses(director, director.config)
    for p in ports.values():
        if p.kind == "afpacket":
            try:
                p.set_filter(dst, src, host.get(p.name, ()))
            except (ValueError, OSError) as e:  # keep the old filter: still correct for what it passes
                log.error("%s: cannot update the receive filter after a reload: %s", p.name, e)
    log.info("receive filters updated: %d addresses", len(dst))


def serve(cfg, *, host_setup: bool = False, stats_out: str | None = None,
          stop_after: float | None = None, mode_override: str | None = None,
          ctl_socket: str | None = None, metrics: str | None = None, offload: bool = True) -> dict:
    from pylvs.core.pipeline import Director
    from pylvs.io import hostsetup, loop

    prev = signal.signal(signal.SIGTERM, _exit_on_signal)
    applied = None
    try:
        ports = open_ports(cfg, offload=offload)
        try:
            director = Director(cfg, macs={n: p.mac for n, p in ports.items()})
            if host_setup:
                try:
                    applied = hostsetup.apply(hostsetup.plan(cfg, offload=all(p.offload for p in ports.values())))
                except hostsetup.HostSetupError as e:
                    raise LiveError(f"{cfg.file}: host setup: {e}") from None
            dst, src = bpf_addresses(director, cfg)
            host = host_addresses()
            for p in ports.values():
                if p.kind == "afpacket":
                    try:
                        n = p.start(dst, src, host.get(p.name, ()))
                    except (ValueError, OSError) as e:
                        raise LiveError(f"{cfg.file}: interface {p.name}: cannot start receiving: {e}") from None
                    log.debug("%s: BPF filter of %d instructions attached", p.name, n)
        except BaseException:
            for p in ports.values():
                p.close()
            raise
        impl = f"{native.IMPLEMENTATION} ({native.REASON})"
        if native.IMPLEMENTATION != "native":
            log.warning("datapath implementation: %s", impl)
        else:
            log.info("datapath implementation: %s; fast path table: %d flows, %d bytes per flow",
                     impl, director.fast.table.capacity, director.fast.stats()["bytes_per_flow"])

        def ready() -> None:
            desc = ", ".join(f"{p.name} ({p.kind}, {p.mac.hex(':')}, mtu {p.mtu})" for p in ports.values())
            log.info("forwarding: mode %s, %d services, interfaces %s", cfg.mode, len(director.services), desc)
            print(f"pylvs: ready ({cfg.file}, mode {cfg.mode}, {native.IMPLEMENTATION})", flush=True)
            sdnotify.notify("READY=1", f"STATUS=forwarding: {len(director.services)} services")

        def control(loop_name: str) -> ControlPlane:
            return ControlPlane(director, config_path=cfg.file, mode_override=mode_override,
                                event_loop=loop_name, ctl_socket=ctl_socket, metrics=metrics)

        # The loop owns SIGTERM/SIGINT/SIGHUP while it runs (a clean stop, a reload) and closes the ports.
        try:
            stats = loop.run(director, ports, on_ready=ready, stop_after=stop_after, control_factory=control,
                             refilter=lambda: _refilter(director, ports, host))
        except OSError as e:  # the ctl socket or the metrics port cannot be had
            raise LiveError(f"{cfg.file}: control: {e}") from None
    finally:
        # Already stopping: a second SIGTERM must not cut the undo short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if applied is not None:
            applied.undo()
        signal.signal(signal.SIGTERM, prev)
    _log_stats(stats)
    if stats_out:
        with open(stats_out, "w") as f:
            json.dump(stats, f, indent=1, default=str)
    return stats


def _log_stats(st: dict) -> None:
    for s in st["services"]:
        log.info("service %s: conns=%s pkts in/out=%s/%s", s["service"], s["conns"], s["pkts_in"], s["pkts_out"])
        for r in s["real_servers"]:
            log.info("  -> %s conns=%s pkts in/out=%s/%s", r["server"], r["conns"], r["pkts_in"], r["pkts_out"])
    fp = st.get("fast_path")
    if fp:
        punts = {k[5:]: v for k, v in fp.items() if k.startswith("punt_") and v}
        log.info("fast path (%s): forwarded=%s punted: %s", fp["implementation"], fp["forwarded"],
                 ", ".join(f"{k}={v}" for k, v in sorted(punts.items())) or "none")
    if st["drops"]:
        log.info("drops: %s", ", ".join(f"{k}={v}" for k, v in sorted(st["drops"].items())))
    for name, c in st["ports"].items():
        log.info("port %s: %s", name, ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    sys.stderr.flush()
