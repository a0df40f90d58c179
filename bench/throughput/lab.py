"""Reading the lab's namespaces: interface counters, listening sockets."""

from __future__ import annotations

import contextlib
import time

def read_text_in(ns: str, path: str) -> str:
    from pylvs.lab.netns import inside
    with inside(ns), open(path) as f:
        return f.read()


def netdev(ns: str) -> dict[str, tuple[int, int, int]]:
    """Per interface in ``ns``: (rx_packets, tx_packets, rx_dropped)."""
    out = {}
    for ln in read_text_in(ns, "/proc/thread-self/net/dev").splitlines()[2:]:
        name, _, rest = ln.partition(":")
        f = rest.split()
        out[name.strip()] = (int(f[1]), int(f[9]), int(f[3]))
    return out


def tx_total(ns: str, ifaces=("eth0", "eth1")) -> int:
    d = netdev(ns)
    return sum(d[i][1] for i in ifaces if i in d)


def listening(ns: str, port: int) -> bool:
    for path in ("/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"):
        with contextlib.suppress(OSError):
            for ln in read_text_in(ns, path).splitlines()[1:]:
                f = ln.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_listening(ns: str, port: int, what: str, timeout: float = 10.0) -> None:
    from pylvs.lab.netns import LabError
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(ns, port):
            return
        time.sleep(0.05)
    raise LabError(f"{what} not listening on port {port} in {ns} within {timeout:.0f} s")
