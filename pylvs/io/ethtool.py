"""Turn NIC offloads on or off with the legacy ethtool ioctls (no ethtool binary needed).

Why pylvs cares: a user-space forwarder reading AF_PACKET sees whatever skb the kernel built.  With GRO/LRO
on the director's NICs, or TSO/GSO on a veth peer (a veth hands its peer whole super-packets, which a wire
never does), frames arrive far larger than the MTU and cannot be forwarded as they are (issue 6 handles them
with PACKET_VNET_HDR).  Suricata and Snort give the same advice for AF_PACKET: GRO and LRO off.

The legacy commands (ETHTOOL_S{TSO,GSO,GRO}, ETHTOOL_SFLAGS for LRO) are still served by every kernel through
the features compatibility layer; ``struct ethtool_value { u32 cmd; u32 data; }``.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GFLAGS = 0x25
ETHTOOL_SFLAGS = 0x26
ETH_FLAG_LRO = 1 << 15
_GET_SET = {  # feature: (get cmd, set cmd)
    "tso": (0x1E, 0x1F),
    "gso": (0x23, 0x24),
    "gro": (0x2B, 0x2C),
    "tx_csum": (0x16, 0x17),
}


def _ioctl(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    buf = array.array("B", struct.pack("=II", cmd, data))
    addr, _ = buf.buffer_info()
    # struct ifreq: 16-byte name, then the ifr_data pointer.
    ifr = struct.pack("16sP", ifname.encode()[:15], addr)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    return struct.unpack("=II", buf.tobytes())[1]


def get_offloads(ifname: str) -> dict[str, bool]:
    """Current tso/gso/gro/tx_csum/lro state of ``ifname`` (in this network namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = {name: bool(_ioctl(s, ifname, get)) for name, (get, _) in _GET_SET.items()}
        out["lro"] = bool(_ioctl(s, ifname, ETHTOOL_GFLAGS) & ETH_FLAG_LRO)
    return out


class OffloadError(OSError):
    """Setting one feature failed.  ``changed`` holds the previous values of the features changed before
    it (those stay changed: the caller decides whether to put them back); errno/strerror are the ioctl's."""

    def __init__(self, ifname: str, feature: str, err: OSError, changed: dict[str, bool]) -> None:
        super().__init__(err.errno, f"{ifname}: cannot set {feature}: {err.strerror or err}")
        self.feature = feature
        self.changed = changed


def set_offloads(ifname: str, **want: bool) -> dict[str, bool]:
    """Set offloads by name (tso, gso, gro, tx_csum, lro), in the order given; returns the previous values
    of those changed.

    One ioctl per feature, so this is not atomic: when the device refuses one (e.g. a fixed feature),
    :class:`OffloadError` says which, and carries in ``changed`` what was already changed (and is left so),
    for the caller to undo with ``set_offloads(ifname, **e.changed)``."""
    unknown = set(want) - set(_GET_SET) - {"lro"}
    if unknown:
        raise ValueError(f"unknown offload(s) {', '.join(sorted(unknown))}")
    before = get_offloads(ifname)
    changed: dict[str, bool] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name, on in want.items():
            if before[name] == on:
                continue
            try:
                if name == "lro":
                    flags = _ioctl(s, ifname, ETHTOOL_GFLAGS)
                    flags = flags | ETH_FLAG_LRO if on else flags & ~ETH_FLAG_LRO
                    _ioctl(s, ifname, ETHTOOL_SFLAGS, flags)
                else:
                    _ioctl(s, ifname, _GET_SET[name][1], int(on))
            except OSError as e:
                raise OffloadError(ifname, name, e, changed) from e
            changed[name] = before[name]
    return changed
