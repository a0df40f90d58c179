"""The peers' Debian packages and versions, and the configurations of the servers and of every balancer."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys

from . import (CLIENT_IP, CLIENT_MAC, DIP, LIP, PORT_HTTP, PORT_IDLE, PORT_IPERF, PORT_SMALL, RIPS, ROOT, TOOLS, VIP,
               log)


# ------------------------------------------------------------------------------------------ packages

def ensure_tools() -> list[str]:
    """Install the peers' Debian packages where a tool is missing; returns notes for the output."""
    notes = []
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return notes
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", *missing]
    log("installing " + " ".join(missing))
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    if r.returncode != 0:
        log("apt-get install failed; apt-get update and again")
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=900,
                       check=False)
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
    notes.append(f"installed {' '.join(missing)}: " + ("ok" if r.returncode == 0 else
                                                       f"FAILED ({r.stderr.strip()[-300:]})"))
    return notes


def _first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0].strip()
    return "?"


def versions() -> list[str]:
    pkgs = sorted(set(TOOLS.values()))
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *pkgs], capture_output=True,
                       text=True, check=False)
    deb = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if " " in ln)
    out = ["debian packages: " + ", ".join(f"{p} {deb.get(p, 'MISSING')}" for p in pkgs)]
    pv = subprocess.run([sys.executable, "-m", "pylvs", "--version"], capture_output=True, text=True,
                        check=False).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or "no git"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    out.append(f"{pv or 'pylvs: version unknown'}; tree {ROOT} at {commit}"
               f"{' + uncommitted changes' if dirty else ''}")
    cpu = "?"
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    out.append(f"kernel {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}")
    return out


# ------------------------------------------------------------------------------------------ configurations

RS_NFT = f"""
table inet bench_rs {{
  counter small {{ }}
  counter idle {{ }}
  chain pre {{
    type filter hook prerouting priority -300; policy accept;
    udp dport {PORT_SMALL} counter name small drop
    udp dport {PORT_IDLE} counter name idle drop
  }}
}}
"""

KERNEL_NFT = f"""
table ip bench_lb {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {VIP} tcp dport {PORT_IPERF} dnat to jhash ip saddr mod 2 map {{ 0 : {RIPS[0]}, 1 : {RIPS[1]} }}
    ip daddr {VIP} tcp dport {PORT_HTTP} dnat to numgen inc mod 2 map {{ 0 : {RIPS[0]}, 1 : {RIPS[1]} }}
    ip daddr {VIP} udp dport {{ {PORT_SMALL}, {PORT_IDLE} }} dnat to numgen inc mod 2 map {{ 0 : {RIPS[0]}, 1 : {RIPS[1]} }}
  }}
}}
"""


def haproxy_cfg() -> str:
    servers = lambda port: "\n".join(f"    server rs{n} {ip}:{port}" for n, ip in enumerate(RIPS, 1))  # noqa: E731
    return f"""global
    maxconn 8000
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
frontend iperf
    bind {VIP}:{PORT_IPERF}
    default_backend iperf
backend iperf
    balance source
{servers(PORT_IPERF)}
frontend http
    bind {VIP}:{PORT_HTTP}
    default_backend http
backend http
    balance roundrobin
{servers(PORT_HTTP)}
"""


def nginx_cfg(d: str) -> str:
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout 5;
    server {{
        listen {PORT_HTTP} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def pylvs_toml(mode: str, max_connections: int) -> str:
    """The shape of examples/<mode>.toml with this bench's services (and no `mac` lines: the device's own)."""
    lines = [f'# generated by bench/bench_throughput.py, shaped like examples/{mode}.toml', f'mode = "{mode}"', ""]
    lines += ['[[interface]]', 'name = "eth0"', 'addresses = ["198.18.0.1/24"]', "",
              '[[interface]]', 'name = "eth1"', f'addresses = ["{DIP}/24"]', ""]
    from pylvs.lab.netns import rs_mac
    for n, ip in enumerate(RIPS, 1):
        lines += ['[[neighbor]]', f'address = "{ip}"', f'mac = "{rs_mac(n)}"', 'interface = "eth1"', ""]
    lines += ['[[neighbor]]', f'address = "{CLIENT_IP}"', f'mac = "{CLIENT_MAC}"', 'interface = "eth0"', ""]
    lines += ['[table]', f'max_connections = {max_connections}', ""]
    services = [(PORT_IPERF, "tcp", "persistence_timeout = 300   # iperf3: control and data to one server"),
                (PORT_HTTP, "tcp", ""), (PORT_SMALL, "udp", ""), (PORT_IDLE, "udp", "")]
    for port, proto, extra in services:
        lines += ['[[virtual_server]]', f'address = "{VIP}"', f'port = {port}', f'protocol = "{proto}"',
                  'scheduler = "rr"']
        if extra:
            lines.append(extra)
        if mode == "fullnat":
            lines += [f'local_addresses = ["{LIP}"]', 'toa = true']
        for ip in RIPS:
            lines += ['  [[virtual_server.real_server]]', f'  address = "{ip}"', f'  port = {port}', '  weight = 1']
        lines.append("")
    return "\n".join(lines)
