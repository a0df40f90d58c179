"""Creating a TUN or TAP device of our own (shared by the TAP port and the TUN-mode decapsulator).

- **A device of our own, gone when we are.**  The device is created with IFF_TUN_EXCL and never made
  persistent.  Without IFF_TUN_EXCL, TUNSETIFF on the name of an existing persistent device *attaches* to
  it (drivers/net/tun.c ``tun_set_iff``): we would run on somebody else's device (a leftover of an earlier
  run made persistent by some tool, or another program's), and it would outlive us, with whatever
  addresses and routes are on it.  With it, such a name is refused (EBUSY), and a non-persistent device
  is unregistered when its last fd is closed (``tun_detach`` -> ``unregister_netdevice``), so what is on it
  vanishes with us, even on a crash.
- **No IPv6 noise.**  pylvs is IPv4-only; an IPv6-enabled device makes the kernel send DAD probes, router
  solicitations and MLD reports into it as soon as it is up: :func:`disable_ipv6` before bringing it up.
- **Frame boundaries.**  With IFF_NO_PI, one read() is one frame (TAP: Ethernet; TUN: IP packet) and one
  write() injects one (``tun_get_user`` -> ``netif_rx``); with IFF_VNET_HDR (``vnet=True``) each starts with
  a 10-byte virtio-net header, and TUNSETOFFLOAD tells the kernel which super-frames and partial checksums
  it may hand over (it segments and finishes the rest before the device).
"""

from __future__ import annotations

import errno
import fcntl
import os

from pylvs.io import sysctl

TUN_DEV = "/dev/net/tun"
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6 = 0x01, 0x02, 0x08, 0x20, 0x40


class TunTapError(Exception):
    """The device cannot be created: a clear, user-facing reason (starts with "TAP name:" / "TUN name:")."""

    code: int | None = None  # the errno, where one applies


def _error(label: str, msg: str, code: int | None = None) -> TunTapError:
    e = TunTapError(f"{label}: {msg}")
    e.code = code
    return e


def set_offload(dev) -> str:
    """Let the kernel hand over (and take) partial checksums and TCP/UDP-over-IPv4 super-frames (TUNSETOFFLOAD);
    returns what it took.  USO (Linux 6.2; the kernel takes it only for both families at once, and IPv6 frames
    are dropped here anyway) is asked for first, then TSO alone."""
    for flags, what in ((TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6, "csum tso4 uso"),
                        (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN, "csum tso4"), (TUN_F_CSUM, "csum")):
        try:
            fcntl.ioctl(dev.fileno(), TUNSETOFFLOAD, flags)  # the value itself, not a pointer (tun.c)
            return what
        except OSError:
            continue
    return "none"


def open_device(name: str, *, tap: bool, vnet: bool = False):
    """A new, non-persistent TAP (``tap=True``) or TUN device ``name``, non-blocking, still down; with a
    virtio-net header before each frame when ``vnet`` (IFF_VNET_HDR).

    Returns a ``pytun.TunTapDevice``; the caller configures it, brings it up (``dev.up()``) and closes it
    on failure (closing the only fd removes it).  :class:`TunTapError` when it cannot be had."""
    kind = "TAP" if tap else "TUN"
    label = f"{kind} {name}"
    try:
        import pytun
    except ImportError:
        raise _error(label, "needs python-pytun (pip install python-pytun)") from None
    if not os.path.exists(TUN_DEV):
        raise _error(label, f"{TUN_DEV} does not exist (load the tun module: `modprobe tun`; in a container, "
                            "pass the device in, e.g. --device /dev/net/tun)", errno.ENOENT)
    flags = (pytun.IFF_TAP if tap else pytun.IFF_TUN) | pytun.IFF_NO_PI | pytun.IFF_TUN_EXCL
    if vnet:
        flags |= IFF_VNET_HDR
    try:
        dev = pytun.TunTapDevice(name=name, flags=flags, dev=TUN_DEV)
    except pytun.Error as e:
        raise open_error(kind, name, e) from None
    try:
        if dev.name != name:  # the kernel never renames an explicit name; be sure we got ours
            raise _error(label, f"the kernel created {dev.name!r} instead")
        os.set_blocking(dev.fileno(), False)
    except BaseException:
        dev.close()
        raise
    return dev


def open_error(kind: str, name: str, e: OSError) -> TunTapError:
    """What a failed TUNSETIFF means, in words."""
    code, label = e.errno, f"{kind} {name}"
    if code in (errno.EPERM, errno.EACCES):
        msg = f"creating a {kind} device needs CAP_NET_ADMIN (run as root or grant the capability)"
    elif code == errno.EBUSY:
        msg = (f"the name {name!r} is already in use {existing_link(name)}; pylvs creates its own {kind} "
               "device, pick a free name")
    elif code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        msg = f"cannot open {TUN_DEV}: {e.strerror} (is the tun module loaded?)"
    elif code == errno.EINVAL:
        msg = f"the kernel refused the name or flags: {e.strerror}"
    else:
        msg = f"cannot create the {kind} device: {e.strerror or e}"
    return _error(label, msg, code)


def existing_link(name: str) -> str:
    """Who already holds ``name`` in this namespace, for the EBUSY message (best effort)."""
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=name)
            if not idx:
                return "by another process"
            info = ipr.get_links(idx[0])[0].get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else None
    except Exception:  # only decorates an error message
        return "by another device"
    if kind == "tun":
        return (f"by another TUN/TAP device: another process holds it, or it is a persistent leftover "
                f"(`ip link del {name}`)")
    return f"by an existing {kind or 'network'} device"


def disable_ipv6(name: str) -> bool:
    """IPv6 off on interface ``name`` (ours, vanishing with us: nothing to restore).  False where IPv6 is
    compiled out or disabled host-wide (no conf/<name> then): nothing to silence."""
    try:
        sysctl.write(sysctl.key("net.ipv6.conf", name, "disable_ipv6"), "1")
    except OSError:
        return False
    return True
