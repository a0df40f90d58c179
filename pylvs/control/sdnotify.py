"""systemd's notify protocol (sd_notify(3)), without libsystemd: one datagram to $NOTIFY_SOCKET.

``READY=1`` once the interfaces are open and forwarding, ``RELOADING=1`` (with ``MONOTONIC_USEC``, which
``Type=notify-reload`` requires) then ``READY=1`` around a reload, ``STOPPING=1`` on the way out, and a
``STATUS=`` line for ``systemctl status``.  Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. "READY=1", "STATUS=...") joined by newlines; False if not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path  # "@": the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto("\n".join(fields).encode(), addr)
    except OSError:
        return False  # systemd gone or the socket not ours: nothing to tell
    return True


def reloading() -> bool:
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
