"""``pylvs ctl``: the client side of the control socket, with ipvsadm's words and layouts.

    pylvs ctl list [-n] [--stats | --rate] [--exact] [--json]      ipvsadm -Ln [--stats|--rate] [--exact]
    pylvs ctl conns [--json] [--limit N]                            ipvsadm -Lnc
    pylvs ctl timeouts                                              ipvsadm -L --timeout
    pylvs ctl add-service -t|-u VIP:PORT [-s SCHED] [-p [SECONDS]] [-M MASK] [--mode M] [--set KEY=VALUE]...
    pylvs ctl edit-service -t|-u VIP:PORT [same options]
    pylvs ctl delete-service -t|-u VIP:PORT
    pylvs ctl add-server -t|-u VIP:PORT -r RIP[:PORT] [-w W] [-m | -g | -i | --mode M] [--set KEY=VALUE]...
    pylvs ctl edit-server -t|-u VIP:PORT -r RIP[:PORT] [same options]
    pylvs ctl delete-server -t|-u VIP:PORT -r RIP[:PORT]
    pylvs ctl weight -t|-u VIP:PORT -r RIP[:PORT] WEIGHT
    pylvs ctl drain | maint | ready -t|-u VIP:PORT -r RIP[:PORT]
    pylvs ctl zero [-t|-u VIP:PORT]
    pylvs ctl save > lb.toml
    pylvs ctl reload

Plain output is laid out as ipvsadm's (scripts parse those columns); on a terminal ``list`` draws rich
tables instead (``--plain`` forces the columns); ``--json`` gives the raw answer.  ``--set KEY=VALUE``
sets any configuration key of the service or server (VALUE in TOML syntax: ``--set toa=false``).
Exit status: 0 done, 1 refused (the reason on stderr), 3 no pylvs on the socket.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tomllib

from pylvs.config import DEFAULT_CTL_SOCKET

EXIT_REFUSED = 1
EXIT_UNAVAILABLE = 3
_FWD = {"m": "nat", "g": "dr", "i": "tun"}


def request(path: str, req: dict, timeout: float = 30.0) -> dict:
    """One request, one answer: a JSON line each way, except that a long answer (``conns``) comes as lines
    with ``"more": true`` and a last one without; their ``result`` lists are joined here."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        with s.makefile("rb") as f:
            ans = json.loads(f.readline() or b"null")
            rows: list | None = None
            while isinstance(ans, dict) and ans.get("more"):
                rows = rows or []
                rows.extend(ans["result"])
                ans = json.loads(f.readline() or b"null")
    if rows is not None and isinstance(ans, dict):
        rows.extend(ans.get("result") or [])
        ans["result"] = rows
    if isinstance(ans, dict):
        ans.pop("more", None)
    return ans


def _hostport(s: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep:
        if default_port is None:
            raise argparse.ArgumentTypeError(f"{s!r}: expected ADDRESS:PORT")
        return s, default_port
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"{s!r}: the port must be a number")
    return host.strip("[]"), int(port)


def _toml_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: take it as a string (--set scheduler=wlc)


def _sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        key, sep, raw = p.partition("=")
        if not sep or not key:
            raise SystemExit(f"pylvs ctl: --set expects KEY=VALUE, got {p!r}")
        out[key.strip()] = _toml_value(raw.strip())
    return out


def _service(args) -> dict | None:
    if args.tcp_service:
        proto, hp = "tcp", args.tcp_service
    elif args.udp_service:
        proto, hp = "udp", args.udp_service
    else:
        return None
    addr, port = _hostport(hp)
    return {"protocol": proto, "address": addr, "port": port}


def build_request(args) -> dict:
    cmd = args.ctl_command
    req: dict = {"cmd": cmd}
    svc = _service(args) if hasattr(args, "tcp_service") else None
    if svc is not None:
        req["service"] = svc
    if hasattr(args, "real_server"):
        addr, port = _hostport(args.real_server, svc["port"] if svc else None)
        req["server"] = {"address": addr, "port": port}
    fields = _sets(getattr(args, "set", None))
    if cmd in ("add-service", "edit-service"):
        if args.scheduler:
            fields["scheduler"] = args.scheduler
        if args.persistent is not None:
            fields["persistence_timeout"] = args.persistent
        if args.netmask:
            import ipaddress

            fields["persistence_netmask"] = ipaddress.ip_network(f"0.0.0.0/{args.netmask}").prefixlen
        if args.mode:
            fields["mode"] = args.mode
    if cmd in ("add-server", "edit-server"):
        if args.weight is not None:
            fields["weight"] = args.weight
        mode = args.mode or next((_FWD[k] for k in "mgi" if getattr(args, k)), None)
        if mode:
            fields["mode"] = mode
    if fields:
        req["set"] = fields
    if cmd == "weight":
        req["weight"] = args.weight_value
    if cmd == "conns" and args.limit is not None:
        req["limit"] = args.limit
    return req


def _svc_opts(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("-t", "--tcp-service", metavar="VIP:PORT")
    g.add_argument("-u", "--udp-service", metavar="VIP:PORT")


def add_parser(sub) -> None:
    c = sub.add_parser("ctl", help="look at and steer a running pylvs (ipvsadm-style), via its control socket")
    c.add_argument("--socket", default=DEFAULT_CTL_SOCKET, help=f"control socket (default {DEFAULT_CTL_SOCKET})")
    c.add_argument("--json", action="store_true", help="print the raw JSON answer")
    cs = c.add_subparsers(dest="ctl_command", required=True)
    ls = cs.add_parser("list", help="services and real servers (ipvsadm -Ln)")
    ls.add_argument("-n", "--numeric", action="store_true", help="accepted for ipvsadm habits (always numeric)")
    g = ls.add_mutually_exclusive_group()
    g.add_argument("--stats", action="store_true")
    g.add_argument("--rate", action="store_true")
    ls.add_argument("--exact", action="store_true")
    ls.add_argument("--plain", action="store_true", help="ipvsadm's columns even on a terminal")
    ls.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    cn = cs.add_parser("conns", help="the connection table (ipvsadm -Lnc)")
    cn.add_argument("-n", "--numeric", action="store_true")
    cn.add_argument("--limit", type=int)
    cn.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    cs.add_parser("timeouts", help="tcp tcpfin udp timeouts (ipvsadm -L --timeout)")
    for name in ("add-service", "edit-service"):
        p = cs.add_parser(name)
        _svc_opts(p)
        p.add_argument("-s", "--scheduler")
        p.add_argument("-p", "--persistent", type=float, nargs="?", const=300.0, metavar="SECONDS")
        p.add_argument("-M", "--netmask")
        p.add_argument("--mode", choices=("nat", "dr", "tun", "fullnat"))
        p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p = cs.add_parser("delete-service")
    _svc_opts(p)
    for name in ("add-server", "edit-server"):
        p = cs.add_parser(name)
        _svc_opts(p)
        p.add_argument("-r", "--real-server", required=True, metavar="RIP[:PORT]")
        p.add_argument("-w", "--weight", type=int)
        for k, m in _FWD.items():
            p.add_argument(f"-{k}", action="store_true", help=f"mode {m}")
        p.add_argument("--mode", choices=("nat", "dr", "tun", "fullnat"))
        p.add_argument("--set", action="append", metavar="KEY=VALUE")
    for name in ("delete-server", "weight", "drain", "maint", "ready"):
        p = cs.add_parser(name)
        _svc_opts(p)
        p.add_argument("-r", "--real-server", required=True, metavar="RIP[:PORT]")
        if name == "weight":
            p.add_argument("weight_value", type=int, metavar="WEIGHT")
    z = cs.add_parser("zero", help="zero the counters (one service or all)")
    _svc_opts(z, required=False)
    cs.add_parser("save", help="print the running configuration as TOML")
    cs.add_parser("reload", help="reload the configuration file (like SIGHUP)")
    c.set_defaults(func=main)


def main(args) -> int:
    try:
        req = build_request(args)
    except argparse.ArgumentTypeError as e:
        print(f"pylvs ctl: {e}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        ans = request(args.socket, req)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(f"pylvs ctl: no pylvs listening on {args.socket} ({e.strerror}); is it running? "
              "(--socket PATH)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (OSError, ValueError) as e:
        print(f"pylvs ctl: {args.socket}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not ans.get("ok"):
        print(f"pylvs ctl: {args.ctl_command}: {ans.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        json.dump(ans.get("result", ans), sys.stdout, indent=1)
        print()
        return 0
    _print(args, ans)
    return 0


def _print(args, ans: dict) -> None:
    from pylvs.control import ipvsadm

    cmd = args.ctl_command
    res = ans.get("result")
    if cmd == "list":
        if sys.stdout.isatty() and not args.plain:
            ipvsadm.render_rich(res, stats=args.stats, rate=args.rate, exact=args.exact)
        else:
            sys.stdout.write(ipvsadm.render_list(res, stats=args.stats, rate=args.rate, exact=args.exact))
    elif cmd == "conns":
        sys.stdout.write(ipvsadm.render_conns(res))
    elif cmd == "timeouts":
        sys.stdout.write(ipvsadm.render_timeouts(res))
    elif cmd == "save":
        sys.stdout.write(res)
    else:
        done = ans.get("done") or ("; ".join(ans.get("changes", [])) or "no change")
        print(f"pylvs ctl: {done}")
