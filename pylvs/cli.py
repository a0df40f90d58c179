"""The ``pylvs`` command line.

    pylvs [run] --config FILE [--mode M] [--host-setup] [--log-format json]
    pylvs check-config FILE [--mode M]
    pylvs host-setup --config FILE [--mode M]
    pylvs rs tun-decap --vip VIP
    pylvs replay --config FILE [--mode M] IN.pcap OUT.pcap [--log actions.jsonl]
    pylvs demo [--mode M] [--driver afpacket|tap] [--offline]
    pylvs ctl VERB ...          (see pylvs/control/ctlcli.py: list, conns, add-server, drain, save, reload...)
    pylvs --version

Errors in the config name the file, the key path and what is wrong, and exit
with status 1 before anything starts.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

from pylvs import __version__
from pylvs.config import MODES, ConfigError, load_config

EXIT_CONFIG = 1
EXIT_RUNTIME = 2
EXIT_UNAVAILABLE = 3


def version_string() -> str:
    from pylvs import native

    try:
        import uvloop  # noqa: F401

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:  # pragma: no cover - depends on the install
        loop = "asyncio (uvloop not installed)"
    return f"pylvs {__version__} ({native.IMPLEMENTATION}: {native.REASON}; event loop: {loop})"


def _err(msg: str) -> None:
    print(f"pylvs: error: {msg}", file=sys.stderr)


def _load(path: str, mode: str | None):
    return load_config(path, mode_override=mode)


def cmd_check_config(args) -> int:
    cfg = _load(args.file, args.mode)
    n_rs = sum(len(v.real_servers) for v in cfg.virtual_servers)
    print(f"{args.file}: OK ({len(cfg.interfaces)} interfaces, {len(cfg.virtual_servers)} services, "
          f"{n_rs} real servers, default mode {cfg.mode})")
    return 0


def cmd_replay(args) -> int:
    from pylvs.core.pipeline import Director
    from pylvs.io.pcap import replay

    cfg = _load(args.config, args.mode)
    try:
        director = Director(cfg)
    except ValueError as e:
        _err(f"{args.config}: {e}")
        return EXIT_CONFIG
    if not os.path.exists(args.input):
        _err(f"{args.input}: no such capture")
        return EXIT_CONFIG
    log = open(args.log, "w") if args.log else None
    try:
        with open(args.output, "wb") as out:
            res = replay(director, args.input, out, log)
    except (ValueError, OSError) as e:
        _err(str(e))
        return EXIT_CONFIG
    finally:
        if log is not None:
            log.close()
    print(f"{args.input}: {res.frames_in} frames in, {res.frames_out} out -> {args.output}")
    print(_summary(director, res))
    return 0


def _summary(director, res) -> str:
    lines = ["  verdicts: " + ", ".join(f"{k}={v}" for k, v in sorted(res.verdicts.items()))]
    st = director.stats()
    for s in st["services"]:
        lines.append(f"  {s['service']:<24} {s['scheduler']:<4} conns={s['conns']} pkts in/out="
                     f"{s['pkts_in']}/{s['pkts_out']}")
        for r in s["real_servers"]:
            lines.append(f"    -> {r['server']:<20} {r['mode']:<8} weight={r['weight']} conns={r['conns']} "
                         f"active={r['active']} inactive={r['inactive']} pkts in/out={r['pkts_in']}/{r['pkts_out']}")
    if st["drops"]:
        lines.append("  drops: " + ", ".join(f"{k}={v}" for k, v in st["drops"].items()))
    if st["events"]:
        lines.append("  events: " + ", ".join(f"{k}={v}" for k, v in st["events"].items()))
    return "\n".join(lines)


def examples_dir() -> pathlib.Path:
    env = os.environ.get("PYLVS_EXAMPLES")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parent.parent / "examples"


def cmd_demo(args) -> int:
    if args.offline:
        return cmd_demo_offline(args)
    from pylvs.lab.demo import main_demo

    return main_demo(examples_dir(), args.mode, args.driver, args.requests, args.bulk_mb)


def cmd_demo_offline(args) -> int:
    from pylvs.core.pipeline import Director
    from pylvs.io.pcap import replay

    ex = examples_dir()
    modes = [args.mode] if args.mode else list(MODES)
    print("pylvs demo --offline: replaying the example captures through the datapath (no namespaces)")
    with tempfile.TemporaryDirectory(prefix="pylvs-demo-") as tmp:
        for mode in modes:
            cfg_path = ex / f"{mode}.toml"
            cap = ex / "captures" / f"{mode}.pcap"
            if not cfg_path.exists() or not cap.exists():
                _err(f"example files for {mode} not found under {ex} (set PYLVS_EXAMPLES)")
                return EXIT_UNAVAILABLE
            director = Director(load_config(cfg_path))
            out = pathlib.Path(tmp) / f"{mode}-out.pcap"
            with open(out, "wb") as f:
                res = replay(director, str(cap), f)
            print(f"\n== {mode.upper()}  {cap.name}: {res.frames_in} frames in, {res.frames_out} out "
                  f"({', '.join(f'{k}: {v}' for k, v in sorted(res.out_by_interface.items()))})")
            print(_summary(director, res))
    return 0


def cmd_run(args) -> int:
    if not args.config:
        _err("--config FILE is required (e.g. pylvs --mode fullnat --config examples/fullnat.toml)")
        return EXIT_CONFIG
    cfg = _load(args.config, args.mode)
    if args.metrics:
        from pylvs.config import parse_listen

        parse_listen(args.metrics, lambda m: ConfigError("--metrics", "", m))
    if args.ctl_socket and not os.path.isabs(args.ctl_socket):
        _err(f"--ctl-socket: expected an absolute path, got {args.ctl_socket!r}")
        return EXIT_CONFIG
    from pylvs.io.live import LiveError, serve

    try:
        stats = serve(cfg, host_setup=args.host_setup, stats_out=args.stats_out, mode_override=args.mode,
                      ctl_socket=args.ctl_socket, metrics=args.metrics, offload=not args.no_offload)
    except LiveError as e:
        _err(str(e))
        return EXIT_RUNTIME
    return 0 if stats is not None else EXIT_RUNTIME


def cmd_host_setup(args) -> int:
    from pylvs.io import hostsetup

    cfg = _load(args.config, args.mode)
    try:
        print(hostsetup.describe(cfg))
    except hostsetup.HostSetupError as e:
        _err(f"{args.config}: {e}")
        return EXIT_RUNTIME
    return 0


def cmd_tun_decap(args) -> int:
    from pylvs.io import tundecap

    argv = [x for v in args.vip for x in ("--vip", v)] + ["--dev", args.dev]
    return tundecap.main(argv)


class _Version(argparse.Action):
    """Print the version unwrapped (argparse's own action re-flows the text)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_string())
        parser.exit()


def _run_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--config", required=required, help="TOML config (see examples/)")
    p.add_argument("--mode", choices=MODES, help="default forwarding mode, overrides the file's")
    p.add_argument("--host-setup", action="store_true",
                   help="apply the host recipe (`pylvs host-setup` prints it) at start, undo it at exit")
    p.add_argument("--stats-out", metavar="FILE", help="write the final counters here as JSON at exit")
    p.add_argument("--no-offload", action="store_true",
                   help="AF_PACKET without virtio-net headers: wire-sized frames only (GSO/GRO super-frames "
                   "do not fit; --host-setup then turns GRO off)")
    p.add_argument("--ctl-socket", metavar="PATH",
                   help="control socket for `pylvs ctl` (default: control.socket, /run/pylvs/pylvs.sock; '' = none)")
    p.add_argument("--metrics", metavar="ADDR:PORT",
                   help="Prometheus endpoint (default: control.metrics, 127.0.0.1:9470; '' = none)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pylvs", description="User-space IPVS-style L4 load balancer",
                                allow_abbrev=False)
    p.add_argument("--version", action=_Version, nargs=0, help="show version, implementation and event loop")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    _run_options(p, required=False)
    p.set_defaults(func=cmd_run)
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="forward live traffic (AF_PACKET / TAP interfaces from the config)")
    _run_options(r, required=True)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("file")
    c.add_argument("--mode", choices=MODES)
    c.set_defaults(func=cmd_check_config)

    h = sub.add_parser("host-setup", help="print the host recipe (routes, rules, sysctls, offloads) "
                       "that `run --host-setup` applies and undoes")
    h.add_argument("--config", required=True)
    h.add_argument("--mode", choices=MODES)
    h.set_defaults(func=cmd_host_setup)

    rp = sub.add_parser("replay", help="run a pcap through the datapath, write what the director sends")
    rp.add_argument("--config", required=True)
    rp.add_argument("--mode", choices=MODES)
    rp.add_argument("--log", help="write one JSON object per input frame here")
    rp.add_argument("input", metavar="IN.pcap")
    rp.add_argument("output", metavar="OUT.pcap")
    rp.set_defaults(func=cmd_replay)

    d = sub.add_parser("demo", help="a throwaway namespace lab: client, pylvs, three real servers, real traffic")
    d.add_argument("--mode", choices=MODES, help="one mode (default: all four in turn)")
    d.add_argument("--driver", choices=("afpacket", "tap"), default="afpacket")
    d.add_argument("--requests", type=int, default=100, help="HTTP requests per mode (default 100)")
    d.add_argument("--bulk-mb", type=int, default=10, help="size of the bulk download (default 10 MB)")
    d.add_argument("--offline", action="store_true",
                   help="no namespaces: replay the example captures through the datapath instead")
    d.set_defaults(func=cmd_demo)

    from pylvs.control import ctlcli

    ctlcli.add_parser(sub)

    rs = sub.add_parser("rs", help="helpers that run on a real server")
    rs_sub = rs.add_subparsers(dest="rs_command", required=True)
    td = rs_sub.add_parser("tun-decap", help="TUN mode without the ipip module: decapsulate IPIP into a TUN "
                           "device so the local stack (VIP on lo) answers")
    td.add_argument("--vip", action="append", required=True, help="a VIP this server serves (repeatable)")
    td.add_argument("--dev", default="pylvs-decap", help="TUN device name (default pylvs-decap)")
    td.set_defaults(func=cmd_tun_decap)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pylvs.logsetup import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        return args.func(args)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
