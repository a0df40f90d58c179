"""Build and tear down the namespace lab: client, director, gateway and real servers on two bridges.

Topology (fixed addresses matching examples/*.toml; namespace names carry a random suffix S)::

    bridge brc (in pl-sw-S), 198.18.0.0/24        bridge brs (in pl-sw-S), 198.19.0.0/24
      c0 - pl-cl-S  eth0 198.18.0.10                d1 - pl-dir-S eth1 02:00:00:00:01:02
      d0 - pl-dir-S eth0 02:00:00:00:01:01          g1 - pl-gw-S  eth1 198.19.0.254
      g0 - pl-gw-S  eth0 198.18.0.254               rN - pl-rsN-S eth0 198.19.0.1N, 02:00:00:00:02:1N

Every veth is created inside a lab namespace with its peer placed straight into the switch namespace, so
nothing ever appears in the root namespace and interface names cannot collide with the host's.  Sysctls and
offloads are set in-process by switching this thread into the namespace (setns affects only the calling
thread, and /proc/sys/net and new sockets follow the caller's namespace).

Pieces usable on their own (other tests' namespaces): :func:`inside`, :func:`set_sysctls`,
:func:`wait_ready`, :func:`file_tail`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Self

from pyroute2 import NetNS, netns

from pylvs.io import sysctl
from pylvs.io.ethtool import set_offloads

log = logging.getLogger(__name__)

MODES = ("nat", "dr", "tun", "fullnat")
VIP = "198.18.0.100"
CLIENT_IP, GW_CLIENT_SIDE, GW_SERVER_SIDE, DIP = "198.18.0.10", "198.18.0.254", "198.19.0.254", "198.19.0.1"
#: the director kernel's own address on the server side (AF_PACKET labs): health checks leave from it
HEALTH_IP = "198.19.0.2"
READY_TIMEOUT = 10.0
_NS_LOCK = threading.RLock()  # serialises setns round trips of this process's threads (may nest)


class LabError(RuntimeError):
    pass


def rs_mac(n: int) -> str:
    return f"02:00:00:00:02:1{n}"


def have_netadmin() -> str | None:
    """None if we can build namespaces here, else a human reason why not."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    with open("/proc/self/status") as f:
        caps = int(next((ln.split()[1] for ln in f if ln.startswith("CapEff:")), "0"), 16)
    if not caps & (1 << 12):
        return "not root (no CAP_NET_ADMIN)"
    if not caps & (1 << 21):
        return "no CAP_SYS_ADMIN (needed to mount and enter network namespaces)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    # A real probe through the same path the lab uses: `ip netns add`, `ip netns exec`, veth and bridge.
    name = f"pl-probe-{secrets.token_hex(3)}"
    steps = [(["ip", "netns", "add", name], "`ip netns add` fails"),
             (["ip", "netns", "exec", name, "ip", "link", "add", "pv0", "type", "veth", "peer", "name", "pv1"],
              "cannot create a veth pair in a namespace"),
             (["ip", "netns", "exec", name, "ip", "link", "add", "pb0", "type", "bridge"],
              "cannot create a bridge in a namespace")]
    added = False
    try:
        for argv, why in steps:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if r.returncode != 0:
                return f"{why}: {r.stderr.strip()[-300:]}"
            added = True
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns` probe failed: {e}"
    finally:
        if added:  # never delete a namespace we did not add
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10, check=False)
    return None


@contextlib.contextmanager
def inside(ns: str):
    """Run the body with this thread in network namespace ``ns`` (and always come back).

    Not pyroute2's pushns(): that saves /proc/self/ns/net (the main thread's namespace, wrong from any other
    thread) and its setns() defaults to O_CREAT, which would quietly create a namespace that vanished."""
    with _NS_LOCK:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            netns.setns(ns, flags=0)
            try:
                yield
            finally:
                netns.setns(home, flags=0)
        finally:
            os.close(home)


def set_sysctls(ns: str, values: dict[str, object]) -> None:
    """Write sysctls (sysctl(8) names, pylvs/io/sysctl.py) inside network namespace ``ns``."""
    with inside(ns):
        for name, value in values.items():
            sysctl.write(name, value)


def file_tail(path: str, n: int = 2000) -> str:
    """The last ``n`` bytes of a (log) file as text; "" if it cannot be read."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - n))
        return f.read().decode(errors="replace")
    return ""


def wait_ready(proc: subprocess.Popen, timeout: float, what: str | None = None, *,
               tail: Callable[[], str] | None = None) -> None:
    """Read ``proc``'s stdout (a pipe) until a line "ready" (or "pylvs: ready ..."); LabError otherwise,
    naming ``what`` (default: its command line) and ending with ``tail()`` (e.g. its stderr log's end).

    Reads the raw fd with os.read: select() on a buffered file object would miss lines already in its
    buffer.  Whatever follows the ready line in the same read is dropped: read the rest with
    ``proc.stdout`` / ``communicate()`` as usual."""
    if proc.stdout is None:
        raise LabError("wait_ready needs a process started with stdout=subprocess.PIPE")
    if what is None:
        what = " ".join(map(str, proc.args if isinstance(proc.args, list) else [proc.args]))[:200]
    fd, buf, seen = proc.stdout.fileno(), b"", []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and len(seen) < 1000:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
            raise LabError(f"{what} exited ({proc.returncode}) before ready; "
                           f"stdout {seen[-5:]}\n{tail() if tail else ''}")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        seen += [ln.decode(errors="replace").strip() for ln in lines]
        if any(ln.split()[:1] == ["ready"] or ln.startswith("pylvs: ready") for ln in seen):
            return
    raise LabError(f"{what} not ready within {timeout:.1f} s; stdout {seen[-5:]}\n{tail() if tail else ''}")


def _ns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (any that escaped our tracking)."""
    try:
        st = os.stat(os.path.join(netns.NETNS_RUN_DIR, name))
    except OSError:
        return []
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            s = os.stat(f"/proc/{pid}/ns/net")
            if (s.st_ino, s.st_dev) == (st.st_ino, st.st_dev) and int(pid) != os.getpid():
                out.append(int(pid))
    return out


class Lab:
    def __init__(self, mode: str, driver: str = "afpacket", *, servers: int = 3, suffix: str | None = None,
                 offloads: bool = False):
        if mode not in MODES:
            raise LabError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
        if driver not in ("afpacket", "tap"):
            raise LabError(f"unknown driver {driver!r} (afpacket or tap)")
        if driver == "tap" and mode not in ("nat", "fullnat"):
            raise LabError("the tap driver serves NAT and FULLNAT only")
        if not 1 <= servers <= 9:  # addresses are 198.19.0.1N
            raise LabError("servers must be 1..9")
        self.mode, self.driver, self.servers = mode, driver, servers
        #: keep the kernel's TSO/GSO/GRO on the traffic sources (whole super-frames reach the director)
        self.offloads = offloads
        self.suffix = suffix or secrets.token_hex(3)
        short = {"sw": "sw", "client": "cl", "director": "dir", "gw": "gw"}
        self.ns = {role: f"pl-{s}-{self.suffix}" for role, s in short.items()}
        self.ns.update({f"rs{n}": f"pl-rs{n}-{self.suffix}" for n in range(1, servers + 1)})
        self.rs_ports = (8080, 5353) if mode in ("nat", "fullnat") else (80, 53)
        self.logdir: str | None = None
        self._created: list[str] = []  # only namespaces we made are ever removed
        self._procs: list[subprocess.Popen] = []
        self._apps: dict[str, subprocess.Popen] = {}  # role -> its HTTP/UDP server process
        self._logs: dict[int, str] = {}  # pid -> stderr log path, for error messages
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self.build()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    # -- build ---------------------------------------------------------------------------------------
    def build(self) -> None:
        if self._created:
            raise LabError("lab already built")
        atexit.register(self.destroy)  # last resort if the caller never reaches destroy()
        step = "logdir"
        try:
            self.logdir = tempfile.mkdtemp(prefix=f"pylvs-lab-{self.suffix}-")
            for step in ("namespaces", "wire", "addresses", "sysctls", "offloads", "start_servers"):
                getattr(self, "_" + step)()
        except BaseException as e:
            self.destroy()
            if isinstance(e, Exception) and not isinstance(e, LabError):
                raise LabError(f"lab build failed at {step}: {type(e).__name__}: {e}") from e
            raise

    def _rtnl(self, role: str) -> NetNS:
        return NetNS(self.ns[role], flags=0)  # flags=0: never create a namespace by accident

    def _namespaces(self) -> None:
        present = set(netns.listnetns())
        for role, name in self.ns.items():
            if name in present:
                raise LabError(f"namespace {name} already exists (suffix collision?)")
            self._created.append(name)  # before create: a half-made one must still be removed
            netns.create(name)
            # IPv6 off before any interface exists, so none ever sends DAD/MLD/RS noise.
            self._sysctl(role, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
            with self._rtnl(role) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def _links(self) -> list[tuple[str, str, str, str, str]]:
        """(role, interface, MAC, switch port, bridge) for every veth pair; MACs as in examples/*.toml."""
        out = [("client", "eth0", "02:00:00:00:00:10", "c0", "brc"),
               ("director", "eth0", "02:00:00:00:01:01", "d0", "brc"),
               ("director", "eth1", "02:00:00:00:01:02", "d1", "brs"),
               ("gw", "eth0", "02:00:00:00:03:01", "g0", "brc"), ("gw", "eth1", "02:00:00:00:03:02", "g1", "brs")]
        return out + [(f"rs{n}", "eth0", rs_mac(n), f"r{n}", "brs") for n in range(1, self.servers + 1)]

    def _wire(self) -> None:
        with self._rtnl("sw") as sw:
            for br in ("brc", "brs"):  # STP off and no forward delay: ports forward at once
                sw.link("add", ifname=br, kind="bridge", br_stp_state=0, br_forward_delay=0)
                sw.link("set", index=sw.link_lookup(ifname=br)[0], state="up")
            for role, ifname, mac, port, br in self._links():
                with self._rtnl(role) as ipr:
                    ipr.link("add", ifname=ifname, kind="veth", address=mac,
                             peer={"ifname": port, "net_ns_fd": self.ns["sw"]})
                    ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
                idx = sw.link_lookup(ifname=port)[0]
                sw.link("set", index=idx, master=sw.link_lookup(ifname=br)[0])
                sw.link("set", index=idx, state="up")

    def _addresses(self) -> None:
        addrs: dict[str, list[tuple[str, str, int]]] = {
            "client": [("eth0", CLIENT_IP, 24)],
            "gw": [("eth0", GW_CLIENT_SIDE, 24), ("eth1", GW_SERVER_SIDE, 24)]}
        routes = {"client": GW_CLIENT_SIDE}
        if self.driver == "tap":  # pylvs adds its TAP and routes itself; the lab only prepares eth0/eth1
            addrs["director"] = [("eth0", "198.18.0.1", 24), ("eth1", DIP, 24)]
        else:  # pylvs owns its addresses; the kernel gets one of its own to send health checks from
            addrs["director"] = [("eth1", HEALTH_IP, 24)]
        for n in range(1, self.servers + 1):
            addrs[f"rs{n}"] = [("eth0", f"198.19.0.1{n}", 24)]
            if self.mode in ("dr", "tun"):  # the VIP is local but never ARPed for (see sysctls)
                addrs[f"rs{n}"].append(("lo", VIP, 32))
            routes[f"rs{n}"] = DIP if self.mode in ("nat", "fullnat") else GW_SERVER_SIDE
        for role, lst in addrs.items():
            with self._rtnl(role) as ipr:
                for ifname, ip, plen in lst:
                    ipr.addr("add", index=ipr.link_lookup(ifname=ifname)[0], address=ip, prefixlen=plen)
                if role in routes:
                    ipr.route("add", dst="0.0.0.0/0", gateway=routes[role])

    def _sysctl(self, role: str, values: dict[str, int]) -> None:
        set_sysctls(self.ns[role], values)

    def _sysctls(self) -> None:
        conf = "net.ipv4.conf."
        v6 = {"net.ipv6.conf.all.disable_ipv6": 1}  # again: 'all' also covers interfaces made since
        for role in self.ns:
            self._sysctl(role, v6)
        if os.path.isdir("/proc/sys/net/bridge"):
            # The switch is a switch: when something on the host has loaded br_netfilter, every bridged frame
            # would also go through the switch namespace's (empty) iptables and conntrack — a cost paid inside
            # whichever process sent the frame, pylvs's send calls included.  Per namespace since Linux 5.3.
            self._sysctl("sw", {f"net.bridge.bridge-nf-call-{t}": 0 for t in ("iptables", "ip6tables", "arptables")})
        nofilter = {conf + i + ".rp_filter": 0 for i in ("all", "default", "eth0", "eth1")}
        self._sysctl("gw", {"net.ipv4.ip_forward": 1, **nofilter})
        if self.driver == "tap":
            self._sysctl("director", {"net.ipv4.ip_forward": 1, **nofilter})
        else:  # pylvs owns every address; the kernel must neither route nor answer
            self._sysctl("director", {"net.ipv4.ip_forward": 0})
        if self.mode in ("dr", "tun"):
            vals = {conf + i + k: v for i in ("all", "eth0") for k, v in ((".arp_ignore", 1), (".arp_announce", 2))}
            if self.mode == "tun":  # decapsulated packets arrive on the decap TUN with a foreign source
                vals.update({conf + i + ".rp_filter": 0 for i in ("all", "default", "eth0", "lo")})
            for n in range(1, self.servers + 1):
                self._sysctl(f"rs{n}", vals)

    def _offloads(self) -> None:
        # A veth hands its peer whole TSO/GSO super-packets, which a wire never does: off on the
        # traffic sources (client, servers, gateway) so the director sees wire-sized frames, unless the
        # lab is asked for them (offloads=True: the kernel's defaults, what a VM or container host has).
        if self.offloads:
            return
        ends = [("client", "eth0"), ("gw", "eth0"), ("gw", "eth1")]
        ends += [(f"rs{n}", "eth0") for n in range(1, self.servers + 1)]
        for role, ifname in ends:
            with inside(self.ns[role]):
                set_offloads(ifname, tso=False, gso=False, gro=False)

    def _start_servers(self) -> None:
        started = []
        for n in range(1, self.servers + 1):
            role = f"rs{n}"
            started.append(self._app(role))
            if self.mode == "tun":
                started.append(self._spawn(role, self.py(role, "pylvs", "rs", "tun-decap", "--vip", VIP)))
        deadline = time.monotonic() + READY_TIMEOUT  # one bound for all: they start in parallel
        for proc in started:
            self.wait_ready(proc, max(0.1, deadline - time.monotonic()))

    def _app(self, role: str) -> subprocess.Popen:
        http, udp = self.rs_ports
        proc = self._spawn(role, self.py(role, "pylvs.lab.servers", "--name", role, "--http-port", str(http),
                                         "--udp-port", str(udp)))
        self._apps[role] = proc
        return proc

    def stop_app(self, role: str) -> None:
        """Stop ``role``'s HTTP and UDP servers (a real server failing, for the health checks)."""
        proc = self._apps.pop(role)
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait(5)

    def start_app(self, role: str) -> None:
        """Start ``role``'s servers again and wait until they listen."""
        self.wait_ready(self._app(role), READY_TIMEOUT)

    def _spawn(self, role: str, argv: list[str]) -> subprocess.Popen:
        assert self.logdir
        path = os.path.join(self.logdir, f"{role}-{os.path.basename(argv[2])}-{len(self._procs)}.log")
        with open(path, "wb") as errf:  # the child keeps its own copy of the descriptor
            proc = self.popen(role, argv, stdout=subprocess.PIPE, stderr=errf)
        self._logs[proc.pid] = path
        return proc

    # -- processes -----------------------------------------------------------------------------------
    def popen(self, role: str, argv: list[str], **kw) -> subprocess.Popen:
        """Start ``argv`` inside ``role``'s namespace; destroy() kills it (and its process group)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)  # Ctrl-C hits only us; destroy() kills the whole group
        with self._lock:
            proc = subprocess.Popen(self._exec(role, argv), **kw)
            proc._pylvs_group = kw["start_new_session"]  # type: ignore[attr-defined]
            self._procs.append(proc)
        return proc

    def _exec(self, role: str, argv: list[str]) -> list[str]:
        if self.ns.get(role) not in self._created:
            raise LabError(f"no namespace for role {role!r} (built: {self._created})")
        return ["ip", "netns", "exec", self.ns[role], *argv]

    def run(self, role: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self._exec(role, argv), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"{role}: {' '.join(argv)} did not finish within {timeout:.0f} s") from None

    def py(self, role: str, *args: str) -> list[str]:
        return [sys.executable, "-m", *args]

    def wait_ready(self, proc: subprocess.Popen, timeout: float) -> None:
        """Read ``proc``'s stdout (a pipe) until a line "ready"; LabError with its stderr tail otherwise."""
        what = " ".join(map(str, proc.args[3:] if isinstance(proc.args, list) else [proc.args]))[:200]
        wait_ready(proc, timeout, what, tail=lambda: self._tail(proc))

    def _tail(self, proc: subprocess.Popen, n: int = 2000) -> str:
        path = self._logs.get(proc.pid)
        if path:
            return file_tail(path, n)
        if proc.stderr is not None:  # a pipe: take what is there without blocking
            with contextlib.suppress(OSError, ValueError):
                fd = proc.stderr.fileno()
                if select.select([fd], [], [], 0.2)[0]:
                    return os.read(fd, 65536)[-n:].decode(errors="replace")
        return ""

    # -- teardown ------------------------------------------------------------------------------------
    def _signal(self, proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if getattr(proc, "_pylvs_group", False):
                os.killpg(proc.pid, sig)  # its own session: children die with it
            elif proc.poll() is None:
                proc.send_signal(sig)

    def destroy(self) -> None:
        """Kill every process (tracked, then stragglers), remove our namespaces.  Idempotent; never raises;
        whatever could not be removed stays listed, so the atexit hook tries again."""
        with self._lock:  # one teardown at a time; a concurrent popen() then finds no namespace
            for what, step in (("processes", self._kill_tracked), ("namespaces", self._remove_namespaces)):
                try:
                    step()
                except Exception as e:  # noqa: BLE001 -- teardown must go on and never raise
                    log.warning("lab teardown (%s): %s: %s", what, type(e).__name__, e)
            if self.logdir:
                shutil.rmtree(self.logdir, ignore_errors=True)
                self.logdir = None
            if not self._created and not self._procs:
                atexit.unregister(self.destroy)

    def _kill_tracked(self) -> None:
        procs = self._procs
        for p in procs:
            self._signal(p, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        for p in procs:
            self._signal(p, signal.SIGKILL)  # also hits group members whose leader already left
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(3)
            for f in filter(None, (p.stdout, p.stderr, p.stdin)):
                with contextlib.suppress(OSError):
                    f.close()
        self._procs = [p for p in procs if p.returncode is None]
        if self._procs:
            log.warning("lab: pids %s survived SIGKILL", [p.pid for p in self._procs])

    def _remove_namespaces(self) -> None:
        for name in self._created:  # first anything still living in a lab namespace (e.g. a pylvs child)
            for _ in range(50):
                pids = _ns_pids(name)
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        for name in reversed(list(self._created)):  # the switch goes last
            try:
                netns.remove(name)
            except FileNotFoundError:
                pass
            except Exception as e:  # noqa: BLE001 -- keep removing the others
                log.warning("lab: cannot remove namespace %s: %s", name, e)
                continue
            self._created.remove(name)
