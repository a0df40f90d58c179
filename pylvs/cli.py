"""The ``pylvs`` command line.

    pylvs check-config FILE [--mode M]
    pylvs replay --config FILE [--mode M] IN.pcap OUT.pcap [--log actions.jsonl]
    pylvs demo [--mode M]
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
    from pylvs.core.pipeline import Director
    from pylvs.io.pcap import replay

    ex = examples_dir()
    modes = [args.mode] if args.mode else list(MODES)
    print("pylvs demo: replaying the example captures through every mode (live namespaces come with "
          "live I/O)")
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
        _err("--config FILE is required")
        return EXIT_CONFIG
    cfg = _load(args.config, args.mode)
    _err(f"{args.config}: config is valid (default mode {cfg.mode}), but live forwarding over AF_PACKET/TAP "
         "is not implemented yet; use `pylvs replay` to run captures through the datapath")
    return EXIT_UNAVAILABLE


class _Version(argparse.Action):
    """Print the version unwrapped (argparse's own action re-flows the text)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_string())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pylvs", description="User-space IPVS-style L4 load balancer")
    p.add_argument("--version", action=_Version, nargs=0, help="show version, implementation and event loop")
    p.add_argument("--config", help="TOML config (for the default `run` command)")
    p.add_argument("--mode", choices=MODES, help="default forwarding mode, overrides the file's")
    p.set_defaults(func=cmd_run)
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="forward live traffic (not implemented yet)")
    r.add_argument("--config", required=True)
    r.add_argument("--mode", choices=MODES)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("file")
    c.add_argument("--mode", choices=MODES)
    c.set_defaults(func=cmd_check_config)

    rp = sub.add_parser("replay", help="run a pcap through the datapath, write what the director sends")
    rp.add_argument("--config", required=True)
    rp.add_argument("--mode", choices=MODES)
    rp.add_argument("--log", help="write one JSON object per input frame here")
    rp.add_argument("input", metavar="IN.pcap")
    rp.add_argument("output", metavar="OUT.pcap")
    rp.set_defaults(func=cmd_replay)

    d = sub.add_parser("demo", help="replay the example captures through every mode")
    d.add_argument("--mode", choices=MODES)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        _err(str(e))
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
