"""A :class:`~pylvs.config.Config` as a TOML document again: what ``pylvs ctl save`` prints, and what the
ctl's edits change before they are validated and applied.

Every runtime change goes the same way as a reload: edit the document, run the full validator on it
(:func:`pylvs.config.parse_config`, with its key-path errors), apply the result as a difference.  So a
change the file could not express cannot be made at run time either, and ``save`` always prints a file that
loads back to the running state (the round trip is tested on every example).
"""

from __future__ import annotations

import copy
import json
import math
from ipaddress import ip_address
from typing import Any

from pylvs.config import DEFAULT_TIMEOUTS, Config, HealthCheck, Table, Control

_CHECK_COMMON = ("type", "interval", "timeout", "rise", "fall", "on_failure")
_CHECK_EXTRA = {"tcp": (), "http": ("path", "status", "body", "host"), "udp": ("send", "expect"),
                "exec": ("command",)}


def _mac(b: bytes) -> str:
    return b.hex(":")


def check_doc(hc: HealthCheck | None) -> dict:
    if hc is None:
        return {"type": "none"}
    out: dict[str, Any] = {k: getattr(hc, k) for k in _CHECK_COMMON}
    if hc.port is not None:
        out["port"] = hc.port
    for k in _CHECK_EXTRA[hc.type]:
        v = getattr(hc, k)
        if v is None:
            continue
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


def service_doc(vs) -> dict:
    out: dict[str, Any] = {
        "address": str(vs.address), "port": vs.port, "protocol": vs.protocol, "scheduler": vs.scheduler,
        "mode": vs.mode,
    }
    if vs.scheduler in ("sh", "mh"):
        out.update(sh_port=vs.sh_port, sh_fallback=vs.sh_fallback)
    # Every other key is written when it differs from its default, whatever the mode uses now (a FULLNAT
    # file run with --mode nat keeps its LIPs and TOA settings through a save).
    if vs.persistence_timeout:
        out["persistence_timeout"] = vs.persistence_timeout
    if vs.persistence_netmask != (32 if vs.address.version == 4 else 128):
        out["persistence_netmask"] = vs.persistence_netmask
    if vs.local_addresses:
        out["local_addresses"] = [str(a) for a in vs.local_addresses]
    if tuple(vs.local_port_range) != (1024, 65535):
        out["local_port_range"] = list(vs.local_port_range)
    for key, default in (("toa", True), ("toa_kind", 254), ("toa_on_syn", False)):
        if getattr(vs, key) != default or vs.mode == "fullnat":
            out[key] = getattr(vs, key)
    out["expire_nodest_conn"] = vs.expire_nodest_conn
    if vs.sorry_server is not None:
        s = vs.sorry_server
        out["sorry_server"] = {"address": str(s.address), "port": s.port, "mode": s.mode}
    if vs.health_check is not None:
        out["health_check"] = check_doc(vs.health_check)
    rss = []
    for rs in vs.real_servers:
        r: dict[str, Any] = {"address": str(rs.address), "port": rs.port, "weight": rs.weight, "mode": rs.mode}
        if rs.state != "ready":
            r["state"] = rs.state
        if rs.health_check != vs.health_check:
            r["health_check"] = check_doc(rs.health_check)
        rss.append(r)
    out["real_server"] = rss
    return out


def config_doc(cfg: Config) -> dict:
    """The document that :func:`pylvs.config.parse_config` turns back into ``cfg`` (modes written out
    resolved, so a ``--mode`` override given at start is kept)."""
    doc: dict[str, Any] = {"mode": cfg.mode}
    ifaces = []
    for i in cfg.interfaces:
        d: dict[str, Any] = {"name": i.name}
        if i.mac is not None:
            d["mac"] = _mac(i.mac)
        d.update(addresses=[str(a) for a in i.addresses], mtu=i.mtu, driver=i.driver)
        if i.host_address is not None:
            d["host_address"] = str(i.host_address)
        ifaces.append(d)
    doc["interface"] = ifaces
    if cfg.routes:
        doc["route"] = [{"prefix": str(r.prefix), **({"via": str(r.via)} if r.via else {}),
                         "interface": r.interface} for r in cfg.routes]
    if cfg.neighbors:
        doc["neighbor"] = [{"address": str(n.address), "mac": _mac(n.mac), "interface": n.interface}
                           for n in cfg.neighbors]
    doc["virtual_server"] = [service_doc(vs) for vs in cfg.virtual_servers]
    changed = {k: v for k, v in cfg.timeouts.items() if v != DEFAULT_TIMEOUTS.get(k)}
    if changed:
        doc["timeouts"] = changed
    t = cfg.table
    if t != Table():
        doc["table"] = {"max_connections": t.max_connections, "sloppy_tcp": t.sloppy_tcp,
                        "icmp_echo": t.icmp_echo, "neighbor_queue": t.neighbor_queue}
    if cfg.control != Control():
        doc["control"] = {"socket": cfg.control.socket, "metrics": cfg.control.metrics}
    return doc


# --------------------------------------------------------------------------- a small TOML writer

def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{v} has no TOML spelling here")
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes (\" \\ \n \uXXXX) are TOML basic-string escapes too; non-ASCII is written as is
        # (TOML is UTF-8; a JSON surrogate pair would not be a TOML escape), DEL escaped (TOML forbids it raw)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(lines: list[str], prefix: str, d: dict) -> None:
    for k, v in d.items():
        if not isinstance(v, dict) and not _is_tables(v):
            lines.append(f"{k} = {_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]"]
            _emit(lines, f"{prefix}{k}.", v)
    for k, v in d.items():
        if _is_tables(v):
            for item in v:
                lines += ["", f"[[{prefix}{k}]]"]
                _emit(lines, f"{prefix}{k}.", item)


def dumps(doc: dict, header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    _emit(lines, "", doc)
    return "\n".join(lines).lstrip("\n") + "\n"


# --------------------------------------------------------------------------- finding things in a document

class EditError(Exception):
    """A ctl edit that names something that is not there (or already is)."""


def _same_addr(a: Any, b: str) -> bool:
    try:
        return ip_address(a) == ip_address(b)
    except ValueError:
        return False


def find_service(doc: dict, protocol: str, address: str, port: int) -> int:
    for i, vs in enumerate(doc.get("virtual_server", [])):
        if vs.get("protocol") == protocol and vs.get("port") == port and _same_addr(vs.get("address"), address):
            return i
    return -1


def find_server(vs: dict, address: str, port: int) -> int:
    for i, rs in enumerate(vs.get("real_server", [])):
        if rs.get("port", vs.get("port")) == port and _same_addr(rs.get("address"), address):
            return i
    return -1


def edited(doc: dict) -> dict:
    return copy.deepcopy(doc)
