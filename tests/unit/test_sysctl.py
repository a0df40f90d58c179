"""pylvs/io/sysctl.py on a fake /proc/sys: names as sysctl(8) spells them, interface names with dots."""

from __future__ import annotations

import pytest

from pylvs.io import sysctl


@pytest.fixture
def proc(tmp_path, monkeypatch):
    monkeypatch.setattr(sysctl, "PROC_SYS", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name,rel", [
    ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
    ("net.ipv4.conf.all.rp_filter", "net/ipv4/conf/all/rp_filter"),
    ("net.ipv4.conf.eth0/5.rp_filter", "net/ipv4/conf/eth0.5/rp_filter"),  # sysctl(8): '/' for a dot
    ("net/ipv4/conf/eth0.5/rp_filter", "net/ipv4/conf/eth0.5/rp_filter"),  # first separator '/': a path
    ("kernel", "kernel"),
])
def test_path(proc, name, rel):
    assert sysctl.path(name) == str(proc / rel)


@pytest.mark.parametrize("name", ["", "net..ipv4", "net.ipv4.", "net/../../etc/passwd", "../x", "net/./x"])
def test_path_refuses_odd_names(name):
    with pytest.raises(ValueError, match="invalid sysctl name"):
        sysctl.path(name)


def test_key_escapes_dots_in_components():
    assert sysctl.key("net.ipv4.conf", "eth0.5", "rp_filter") == "net.ipv4.conf.eth0/5.rp_filter"
    assert sysctl.key("net.ipv4.conf", "eth0", "rp_filter") == "net.ipv4.conf.eth0.rp_filter"
    assert sysctl.key("net.ipv4.ip_forward") == "net.ipv4.ip_forward"


def test_read_write(proc):
    f = proc / "net" / "ipv4" / "conf" / "eth0.5" / "rp_filter"
    f.parent.mkdir(parents=True)
    f.write_text("1\n")
    name = sysctl.key("net.ipv4.conf", "eth0.5", "rp_filter")
    assert sysctl.read(name) == "1"
    assert sysctl.write(name, 0) == "1"  # the old value, stripped
    assert f.read_text() == "0"
    assert sysctl.write(name, "0") == "0"  # the same value is written again (some parameters act on it)
    assert not (proc / "net" / "ipv4" / "conf" / "eth0" / "5").exists()
    with pytest.raises(FileNotFoundError):
        sysctl.read("net.ipv4.conf.nosuch0.rp_filter")
    with pytest.raises(FileNotFoundError):  # never creates a parameter
        sysctl.write("net.ipv4.conf.nosuch0.rp_filter", "0")
