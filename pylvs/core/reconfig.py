"""A new configuration applied to a running Director as a difference (reload, ``pylvs ctl`` edits).

Sans-I/O like the rest of the core: the caller has parsed and validated the new :class:`~pylvs.config.Config`
completely before anything here runs, and this module either refuses it whole (:class:`ReconfigError`,
nothing changed) or applies it.  What it promises (keepalived's reload, IPVS's own rules):

- no established flow is dropped: every flow keeps the server, the mode and the (FULLNAT) local address it
  was created with; a kept server keeps its counters, connections and health verdict;
- a server gone from a service, or a whole service gone, is retired like IPVS moves a server to its trash:
  its flows go on until they end, or are expired at their next packet when the service says
  ``expire_nodest_conn`` (``Director._l4``); a retired server added back is reused, counters and all;
- addresses the director answers for (VIPs, LIPs) stay answered while a flow still uses them, then are let
  go (so a VIP moved to another host is not fought over);
- what needs the process restarted (interfaces, the connection table's size) is refused with the reason.
"""

from __future__ import annotations

from pylvs.core.service import Service


class ReconfigError(Exception):
    """The new configuration cannot be applied to the running process (nothing was changed)."""


def _fixed(cfg) -> tuple:
    ifaces = tuple((i.name, i.mac, i.addresses, i.mtu, i.driver, i.host_address) for i in cfg.interfaces)
    return ifaces, cfg.table.max_connections


def check(director, cfg) -> None:
    """Raise ReconfigError if ``cfg`` differs from the running one where a restart is needed."""
    old_if, old_max = _fixed(director.config)
    new_if, new_max = _fixed(cfg)
    if old_if != new_if:
        raise ReconfigError("the interfaces changed (names, MACs, addresses, MTU or driver): that needs a "
                            "restart of pylvs, not a reload")
    if old_max != new_max:
        raise ReconfigError(f"table.max_connections changed ({old_max} -> {new_max}): the connection table is "
                            "sized at start; that needs a restart")


def apply(director, cfg) -> list[str]:
    """Apply ``cfg`` (already validated) to ``director``; returns what changed, one line each."""
    check(director, cfg)
    old = director.config
    changes: list[str] = []
    d = director
    before = {id(x): x.available for s in d.services + d.retired_services for x in s.all_dests()}

    if cfg.routes != old.routes or cfg.neighbors != old.neighbors:
        from pylvs.core.routing import Routes

        d.routes = Routes(d.ifaces, cfg.routes)
        d.neigh.set_static(cfg.neighbors)
        # Next hops may have moved: every fast flow comes back once and is handed over again.
        d.events["fast_evicted_reload"] += d.fast.evict()
        changes.append("routes/neighbours updated")
    if dict(cfg.timeouts) != dict(old.timeouts):
        d.set_timeouts(cfg.timeouts)
        changes.append("timeouts updated (new deadlines only)")
    d.sloppy_tcp = cfg.table.sloppy_tcp
    d.icmp_echo = cfg.table.icmp_echo
    d.neigh.queue_limit = cfg.table.neighbor_queue

    by_key = {(s.proto, s.addr, s.port): s for s in d.services}
    services: list[Service] = []
    for vs in cfg.virtual_servers:
        key = Service.key_of(vs)
        s = by_key.pop(key, None)
        if s is not None:
            if s.cfg != vs:
                changes.append(f"service {s.label} updated")
            added = s.reconfigure(vs)
        else:
            # Back from retirement (its old flows still live), or new.
            s = next((r for r in d.retired_services if (r.proto, r.addr, r.port) == key), None)
            if s is not None:
                d.retired_services.remove(s)
                added = s.reconfigure(vs)
            else:
                s = Service(vs)
                added = s.all_dests()
            changes.append(f"service {s.label} added")
        for x in added:
            d.fast.register(s, x)
        services.append(s)
    for s in by_key.values():  # services gone from the configuration
        for x in s.dests + ([s.sorry] if s.sorry else []):
            x.present = False
            x.settle()
        d.retired_services.append(s)
        changes.append(f"service {s.label} removed ({s.live} flows left to finish)")
    d.services = services
    d.config = cfg
    d.refresh_addresses()
    for s in d.services:
        s.reschedule()
    for s in d.services + d.retired_services:
        for x in s.all_dests():
            if before.get(id(x), True) and not x.available:
                d.dest_unavailable(x)
    d.forget_idle_retired()
    return changes
