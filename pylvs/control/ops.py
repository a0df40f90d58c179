"""The ctl's requests as edits of the configuration document (sans-I/O: dict in, dict out).

A request is one JSON object: ``{"cmd": NAME, ...}``.  Edits name a service as ``{"protocol": "tcp",
"address": "198.18.0.100", "port": 80}`` and a real server as ``{"address": ..., "port": ...}``; the fields
they set are the TOML keys of ``[[virtual_server]]`` / ``[[virtual_server.real_server]]``, so the
validator's messages (key paths, allowed values) answer a bad request exactly as they answer a bad file.
:func:`edit` returns the new document; the caller validates and applies it, or changes nothing.
"""

from __future__ import annotations

from typing import Any

from pylvs.control.document import EditError, edited, find_server, find_service

#: requests that change the configuration (the rest only read)
EDITS = ("add-service", "edit-service", "delete-service", "add-server", "edit-server", "delete-server",
         "weight", "drain", "maint", "ready")
READS = ("list", "conns", "timeouts", "save", "reload", "zero", "ping")

_SERVICE_KEY = ("protocol", "address", "port")


def _obj(req: dict, key: str) -> dict:
    v = req.get(key)
    if not isinstance(v, dict):
        raise EditError(f"request needs {key!r}: an object")
    return v


def _service_key(req: dict) -> tuple[str, str, int]:
    s = _obj(req, "service")
    proto, addr, port = s.get("protocol"), s.get("address"), s.get("port")
    if proto not in ("tcp", "udp") or not isinstance(addr, str) or not isinstance(port, int) \
            or isinstance(port, bool):
        raise EditError("service must be {\"protocol\": \"tcp\"|\"udp\", \"address\": str, \"port\": int}")
    return proto, addr, port


def _label(key: tuple[str, str, int]) -> str:
    return f"{key[0].upper()} {key[1]}:{key[2]}"


def _server_key(req: dict, default_port: int) -> tuple[str, int]:
    r = _obj(req, "server")
    addr, port = r.get("address"), r.get("port", default_port)
    if not isinstance(addr, str) or not isinstance(port, int) or isinstance(port, bool):
        raise EditError("server must be {\"address\": str, \"port\": int}")
    return addr, port


def _fields(req: dict) -> dict[str, Any]:
    f = req.get("set", {})
    if not isinstance(f, dict):
        raise EditError("'set' must be an object of configuration keys")
    return f


def _no_key(fields: dict, keys: tuple[str, ...], cmd: str) -> dict:
    """The object's own key comes from the request's name for it, never from 'set'."""
    for k in keys:
        if k in fields:
            raise EditError(f"{cmd}: {k!r} is given by the service/server named, not by 'set'")
    return fields


def edit(doc: dict, req: dict) -> tuple[dict, str]:
    """Apply one edit request to a copy of ``doc``; returns (new document, what was done)."""
    cmd = req.get("cmd")
    new = edited(doc)
    key = _service_key(req)
    services = new.setdefault("virtual_server", [])
    i = find_service(new, *key)
    if cmd == "add-service":
        if i >= 0:
            raise EditError(f"service {_label(key)} already exists")
        vs = dict(zip(_SERVICE_KEY, key))
        vs.update(_no_key(_fields(req), _SERVICE_KEY, cmd))
        vs.setdefault("real_server", [])
        services.append(vs)
        return new, f"service {_label(key)} added"
    if i < 0:
        raise EditError(f"no service {_label(key)}")
    vs = services[i]
    if cmd == "edit-service":
        f = _fields(req)
        for k in ("real_server", *_SERVICE_KEY):
            if k in f:
                raise EditError(f"edit-service cannot change {k!r} (delete and add the service instead)")
        vs.update(f)
        return new, f"service {_label(key)} updated"
    if cmd == "delete-service":
        del services[i]
        return new, f"service {_label(key)} deleted"
    rss = vs.setdefault("real_server", [])
    addr, port = _server_key(req, key[2])
    j = find_server(vs, addr, port)
    what = f"{addr}:{port} of {_label(key)}"
    if cmd == "add-server":
        if j >= 0:
            raise EditError(f"real server {what} already exists")
        rs = {"address": addr, "port": port}
        rs.update(_no_key(_fields(req), ("address", "port"), cmd))
        rss.append(rs)
        return new, f"real server {what} added"
    if j < 0:
        raise EditError(f"no real server {what}")
    if cmd == "delete-server":
        del rss[j]
        return new, f"real server {what} deleted"
    if cmd == "edit-server":
        f = _fields(req)
        for k in ("address", "port"):
            if k in f:
                raise EditError(f"edit-server cannot change {k!r} (delete and add the server instead)")
        rss[j].update(f)
        return new, f"real server {what} updated"
    if cmd == "weight":
        rss[j]["weight"] = req.get("weight")
        return new, f"real server {what}: weight {req.get('weight')}"
    if cmd in ("drain", "maint", "ready"):
        rss[j]["state"] = cmd
        return new, f"real server {what}: {cmd}"
    raise EditError(f"unknown command {cmd!r}")
