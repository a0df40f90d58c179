"""Read and write kernel parameters under /proc/sys, by sysctl(8) name.

Names are spelled as sysctl(8) spells them: components separated by dots, and a dot *inside* a component
(an interface ``eth0.5``, a VLAN) written as ``/``: ``net.ipv4.conf.eth0/5.rp_filter`` is
/proc/sys/net/ipv4/conf/eth0.5/rp_filter.  As in sysctl(8) (procps ``slashdot``), a name whose first
separator is ``/`` is taken as a path already: ``net/ipv4/conf/eth0.5/rp_filter`` names the same file.
Interface names cannot contain ``/`` (the kernel's ``dev_valid_name``), so the mapping is exact; build
names from variables with :func:`key`, which does the escaping.

Everything here acts on the network namespace of the calling *thread* (/proc/sys/net follows it).
"""

from __future__ import annotations

import os

PROC_SYS = "/proc/sys"


def key(*parts: str) -> str:
    """The sysctl name of path components, e.g. ``key("net.ipv4.conf", ifname, "rp_filter")``.

    The first component may already be a dotted prefix (it is taken as it is); the others are single
    components, so a dot in them (an interface name) is escaped as ``/``."""
    head, *rest = parts
    return ".".join([head, *(p.replace(".", "/") for p in rest)])


def path(name: str) -> str:
    """The /proc/sys file of sysctl name ``name``."""
    sep = next((c for c in name if c in "./"), "/")
    rel = name if sep == "/" else name.translate(str.maketrans("./", "/."))
    comps = rel.split("/")
    if not name or any(c in ("", ".", "..") for c in comps):
        raise ValueError(f"invalid sysctl name {name!r}")
    return os.path.join(PROC_SYS, *comps)


def read(name: str) -> str:
    """The current value of ``name``, stripped (OSError if there is no such parameter)."""
    with open(path(name)) as f:
        return f.read().strip()


def write(name: str, value: object) -> str:
    """Set ``name`` to ``value``; returns the value it had before.

    Always writes, also when the value is the same (some parameters act on every write).  Note that a few
    parameters change others when their value changes (``net.ipv4.ip_forward``: see
    pylvs/io/hostsetup.py ``IpForward``)."""
    p = path(name)
    with open(p) as f:
        old = f.read().strip()
    with open(p, "w") as f:
        f.write(str(value))
    return old
