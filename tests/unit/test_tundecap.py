"""The TUN-mode decapsulator's setup (pylvs/io/tundecap.py), unprivileged: the device it asks for, and how a
failure to start is reported (one line, exit status 2, no traceback).  decap() itself and a live run:
tests/integration/test_lab_tools.py."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

import pytest

from pylvs.io import tundecap, tuntap


@pytest.fixture
def quiet_main(monkeypatch):
    """main() without touching process-wide state: signal handlers, the pylvs logger's handlers."""
    monkeypatch.setattr(tundecap.signal, "signal", lambda *a: None)
    monkeypatch.setattr(logging.getLogger("pylvs"), "handlers", [logging.NullHandler()])


def test_open_tun_asks_for_an_exclusive_new_device(monkeypatch):
    pytun = pytest.importorskip("pytun")
    seen = {}

    def fake(**kw):
        seen.update(kw)
        raise pytun.Error(errno.EBUSY, os.strerror(errno.EBUSY))
    monkeypatch.setattr(tuntap, "TUN_DEV", "/dev/null")
    monkeypatch.setattr(tuntap, "existing_link", lambda name: "by another TUN/TAP device")
    monkeypatch.setattr(pytun, "TunTapDevice", fake)
    with pytest.raises(tundecap.SetupError) as ei:
        tundecap.open_tun("pl-decap")
    # IFF_TUN_EXCL: a leftover persistent device of that name is refused, never attached to
    assert seen == {"name": "pl-decap", "flags": pytun.IFF_TUN | pytun.IFF_NO_PI | pytun.IFF_TUN_EXCL,
                    "dev": "/dev/null"}
    assert str(ei.value) == ("TUN pl-decap: the name 'pl-decap' is already in use by another TUN/TAP device; "
                             "pylvs creates its own TUN device, pick a free name")


def test_open_tun_without_pytun(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytun", None)  # import pytun -> ImportError
    with pytest.raises(tundecap.SetupError, match=r"^TUN pl-decap: needs python-pytun \(pip install python-pytun\)$"):
        tundecap.open_tun("pl-decap")


@pytest.mark.parametrize("exc,fragment", [
    (tundecap.SetupError("TUN x: needs python-pytun (pip install python-pytun)"),
     "TUN x: needs python-pytun (pip install python-pytun)"),
    (ImportError("No module named 'pytun'"), "ImportError: No module named 'pytun'"),
    (PermissionError(errno.EPERM, "Operation not permitted"), "PermissionError: [Errno 1] Operation not permitted"),
])
def test_main_setup_failure_is_one_line_and_exit_2(monkeypatch, capsys, quiet_main, exc, fragment):
    def run(*a, **kw):
        raise exc
    monkeypatch.setattr(tundecap, "run", run)
    assert tundecap.main(["--vip", "198.18.0.100"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"pylvs: error: tun-decap cannot start: {fragment}\n"


def test_main_failure_after_ready_is_not_hidden(monkeypatch, capsys, quiet_main):
    def run(vips, dev, stop, ready):
        ready()
        raise RuntimeError("bug")
    monkeypatch.setattr(tundecap, "run", run)
    with pytest.raises(RuntimeError, match="bug"):
        tundecap.main(["--vip", "198.18.0.100"])
    assert capsys.readouterr().out == "ready\n"


def test_main_without_pytun_end_to_end():
    """The real entry point in a child without pytun: a clear line, status 2, no traceback, no device."""
    code = ("import sys; sys.modules['pytun'] = None\n"
            "from pylvs.io.tundecap import main\n"
            "sys.exit(main(['--vip', '198.18.0.100', '--dev', 'pl-nopytun']))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, check=False)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert "pylvs: error: tun-decap cannot start: " in res.stderr
    # as root the raw socket opens and the TUN device is what fails; unprivileged, the socket already does
    assert ("needs python-pytun" in res.stderr) if os.geteuid() == 0 else ("raw IPIP socket" in res.stderr)
