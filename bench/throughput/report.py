"""The output: the table, the ratios to the peers, pylvs's own counters, the notes and the targets."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import PYLVS_MODES, SYSTEMS, Durations

if TYPE_CHECKING:
    from .balancer import Run

def fmt(v, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


ROWS = (  # key, label, format, higher is better
    ("bulk1", "bulk TCP, 1 stream (Gb/s)", ".2f", True),
    ("bulk4", "bulk TCP, 4 streams (Gb/s)", ".2f", True),
    ("cps", "new connections/s (wrk, Connection: close)", ".0f", True),
    ("small", "64-byte UDP delivered, paced (kpps)", ".1f", True),
    ("small_offered", "  offered (kpps)", ".1f", None),
    ("small_loss", "  lost (%)", ".1f", None),
    ("smallmax", "64-byte UDP delivered, unpaced (kpps)", ".1f", True),
    ("smallmax_offered", "  offered (kpps)", ".1f", None),
    ("smallmax_loss", "  lost (%)", ".1f", None),
    ("lat_p50", "latency p50 (ms, new conn/request)", ".2f", False),
    ("lat_p99", "latency p99 (ms)", ".2f", False),
    ("cpu_bulk1", "LB CPU per forwarded pkt, 1 stream (us)", ".2f", False),
    ("cpu_bulk4", "LB CPU per forwarded pkt, 4 streams (us)", ".2f", False),
    ("cpu_small", "LB CPU per forwarded pkt, 64B paced (us)", ".2f", False),
    ("cpu_smallmax", "LB CPU per forwarded pkt, 64B unpaced (us)", ".2f", False),
    ("cpu_cps", "LB CPU per forwarded pkt, new conns (us)", ".2f", False),
)
RATIO_KEYS = ("bulk1", "bulk4", "cps", "small", "smallmax", "lat_p50", "lat_p99", "cpu_bulk1", "cpu_bulk4",
              "cpu_small", "cpu_smallmax", "cpu_cps")
IDLE_KEYS = ("bulk1", "bulk4", "small", "small_offered", "small_loss", "smallmax", "smallmax_offered",
             "smallmax_loss", "cpu_bulk1", "cpu_bulk4", "cpu_small", "cpu_smallmax")


def ratio(a, b) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def report(runs: dict[str, Run], d: Durations, idle_n: int, head: list[str], notes: list[str]) -> str:
    out = []
    w0, w = 44, 14
    title = {k: t for k, t, _ in SYSTEMS}
    out.append("")
    out.append("== pylvs vs. its peers: one run, each figure measured once, this machine shared by load, "
               "balancer and servers")
    out += ["  " + h for h in head]
    out.append(f"  loads: iperf3 {d.bulk} s each; latency {d.lat_rate} req/s for {d.lat} s (new connection each, "
               f"open loop); wrk {d.wrk} s -t2 -c32 Connection: close;")
    out.append(f"  64-byte UDP: {int(d.small_pps * d.small)} frames over 64 flows from trafgen on one CPU, paced at "
               f"{d.small_pps / 1e3:.0f} kpps, then unpaced (as fast as it sends); counted at the servers")
    keys = [k for k, _, _ in SYSTEMS if k in runs]
    out.append("")
    out.append(f"{'figure':<{w0}}" + "".join(f"{title[k]:>{w}}" for k in keys))
    for key, label, spec, _ in ROWS:
        out.append(f"{label:<{w0}}" + "".join(f"{fmt(runs[k].res.get(key), spec):>{w}}" for k in keys))
    pmodes = [m for m in PYLVS_MODES if m in runs]
    for base, bname in (("kernel", "nft DNAT"), ("haproxy", "HAProxy")):
        if base not in runs or not pmodes:
            continue
        out.append("")
        out.append(f"{'ratio pylvs / ' + bname:<{w0}}" + "".join(f"{title[m]:>{w}}" for m in pmodes))
        for key, label, _, higher in ROWS:
            if key not in RATIO_KEYS:
                continue
            vals = [ratio(runs[m].res.get(key), runs[base].res.get(key)) for m in pmodes]
            if all(v is None for v in vals):
                continue
            lab = label + ("" if higher else " [lower=better]")
            out.append(f"{lab:<{w0}}" + "".join(f"{fmt(v, '.2f') + 'x' if v is not None else 'n/a':>{w}}"
                                                   for v in vals))
    # idle flows
    nat = runs.get("nat")
    if idle_n and nat is not None:
        out.append("")
        fill = nat.idle.get("fill")
        if fill:
            out.append(f"== pylvs NAT with idle flows: asked {idle_n}, {fill['delivered']} single-packet UDP flows "
                       f"reached the servers ({fill['sent']} sent) in {fill['secs']:.1f} s = "
                       f"{fill['rate']:.0f} new flows/s ({fill['why']}); pylvs RSS {fill['rss_before_mb']:.0f} -> "
                       f"{fill['rss_after_mb']:.0f} MB")
        if nat.idle.get("skipped"):
            out.append(f"  SKIPPED: {nat.idle['skipped']}")
        else:
            out.append(f"{'figure':<{w0}}{'empty':>{w}}{'idle flows':>{w}}{'idle/empty':>{w}}")
            for key, label, spec, _ in ROWS:
                if key in IDLE_KEYS:
                    a, b = nat.res.get(key), nat.idle.get(key)
                    r = ratio(b, a) if key in RATIO_KEYS else None
                    out.append(f"{label:<{w0}}{fmt(a, spec):>{w}}{fmt(b, spec):>{w}}"
                               f"{(fmt(r, '.2f') + 'x') if r is not None else '':>{w}}")
    elif idle_n:
        out.append("")
        out.append("== idle flows: not measured (the pylvs NAT run did not happen)")
    # pylvs's own view
    for m in pmodes:
        st = runs[m].res.get("stats")
        if not st:
            continue
        fp = st.get("fast_path") or {}
        fwd = fp.get("forwarded", 0)
        punted = sum(v for k, v in fp.items() if k.startswith("punt_"))
        drops = st.get("drops") or {}
        ports = st.get("ports") or {}
        out.append("")
        out.append(f"== {title[m]} counters at exit: fast path ({fp.get('implementation', '?')}) {fwd} frames, "
                   f"slow path {punted} ({100 * fwd / max(1, fwd + punted):.1f}% fast); drops: "
                   + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"))
        out.append(f"   connections in the table at exit {st.get('connections', '?')}; fast-path flows "
                   f"{fp.get('flows', '?')} of capacity {fp.get('capacity', '?')} "
                   f"({(fp.get('memory_bytes') or 0) / 2**20:.0f} MB), inserts failed {fp.get('inserts_failed', '?')}")
        for pname, c in ports.items():
            extra = {k: v for k, v in c.items() if k not in ("rx_frames", "tx_frames", "rx_bytes", "tx_bytes")}
            out.append(f"   port {pname}: rx {c.get('rx_frames', 0)} tx {c.get('tx_frames', 0)} "
                       + " ".join(f"{k} {v}" for k, v in sorted(extra.items())))
    # notes
    all_notes = list(notes)
    for k in keys:
        r = runs[k]
        all_notes += [f"{title[k]}: {n}" for n in r.notes]
        for res, pre in ((r.res, ""), (r.idle, "with idle flows: ")):
            for tag in ("small", "smallmax"):
                if res.get(f"{tag}_detail"):
                    all_notes.append(f"{title[k]}: {pre}{res[f'{tag}_detail']}")
            shares = [f"{what} {res[f'busy_{tag}']:.0f}% ({res[f'sys_{tag}']:.0f}% of it in the kernel)"
                      for tag, what in (("bulk1", "bulk 1 stream"), ("bulk4", "bulk 4 streams"),
                                        ("small", "64B paced"), ("smallmax", "64B unpaced"),
                                        ("cps", "new conns"))
                      if res.get(f"busy_{tag}") is not None and res.get(f"sys_{tag}") is not None]
            if shares:
                all_notes.append(f"{title[k]}: {pre}process CPU, share of one CPU over the load: " + ", ".join(shares))
        if "retr1" in r.res:
            all_notes.append(f"{title[k]}: iperf3 retransmits 1 stream {r.res.get('retr1')}, "
                             f"4 streams {r.res.get('retr4')}")
    if all_notes:
        out.append("")
        out.append("== notes")
        out += ["  " + n for n in all_notes]
    # targets
    out.append("")
    out.append("== targets (report only)")

    def target(label: str, value: float | None, want: float) -> None:
        verdict = "n/a (not measured)" if value is None else ("PASS" if value >= want else "FALL SHORT")
        out.append(f"  {label:<62}{fmt(value, '.3f') + 'x' if value is not None else '':>8}  {verdict}")

    for m in ("nat", "fullnat"):
        if m not in runs:
            continue
        for s in (1, 4):
            target(f"bulk {s} stream{'s' if s > 1 else ''}, pylvs {m.upper()} >= 0.6x nft DNAT",
                   ratio(runs[m].res.get(f"bulk{s}"), runs.get("kernel") and runs["kernel"].res.get(f"bulk{s}")), 0.6)
            target(f"bulk {s} stream{'s' if s > 1 else ''}, pylvs {m.upper()} >= 1.0x HAProxy",
                   ratio(runs[m].res.get(f"bulk{s}"), runs.get("haproxy") and runs["haproxy"].res.get(f"bulk{s}")),
                   1.0)
    for m in pmodes:
        target(f"new connections/s, pylvs {m.upper()} >= 0.9x nft DNAT",
               ratio(runs[m].res.get("cps"), runs.get("kernel") and runs["kernel"].res.get("cps")), 0.9)
    for tag, how in (("small", "paced"), ("smallmax", "unpaced")):
        for m in pmodes:
            target(f"64-byte delivered ({how}), pylvs {m.upper()} >= 0.8x nft DNAT",
                   ratio(runs[m].res.get(tag), runs.get("kernel") and runs["kernel"].res.get(tag)), 0.8)
    if idle_n and nat is not None:
        for key, label in (("bulk1", "bulk 1 stream"), ("bulk4", "bulk 4 streams"), ("small", "64-byte paced"),
                           ("smallmax", "64-byte unpaced")):
            v = None if nat.idle.get("skipped") else ratio(nat.idle.get(key), nat.res.get(key))
            target(f"{label} with {idle_n} idle flows >= 0.9x empty (NAT)", v, 0.9)
    return "\n".join(out)
