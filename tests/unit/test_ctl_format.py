"""pylvs.control.ipvsadm: plain text laid out exactly like ipvsadm 1.31's, and the rich terminal view.

The golden strings below were worked out by hand from ipvsadm.c's printf formats (print_title,
print_service_entry, print_largenum, list_conn/print_conn, list_timeout), not captured from the renderer.
ipvsadm pads the last column too ("%-10u\\n"), so server lines end in blanks.
"""

import copy
import io

import pytest
from rich.console import Console

from pylvs.control.ipvsadm import largenum, render_conns, render_list, render_rich, render_timeouts

pytestmark = pytest.mark.once

_Z = dict.fromkeys(("cps", "inpps", "outpps", "inbps", "outbps"), 0)


def _rs(addr, port, mode, fwd, weight, active, inactive, counters=(0, 0, 0, 0, 0), *, config_weight=None,
        state="ready", health="up", sorry=False, rate=_Z):
    c = dict(zip(("conns", "pkts_in", "pkts_out", "bytes_in", "bytes_out"), counters))
    return {"address": addr, "port": port, "mode": mode, "forward": fwd, "weight": weight,
            "config_weight": weight if config_weight is None else config_weight, "state": state,
            "health": health, "sorry": sorry, "active": active, "inactive": inactive, "persist": 0,
            **c, "rate": dict(rate)}


def snap():
    # listed out of ipvsadm's order (UDP before TCP, servers unsorted): the output must be sorted
    udp = {"protocol": "udp", "address": "198.18.0.53", "port": 53, "scheduler": "sh",
           "flags": ["sh-fallback", "sh-port"], "persistent": 0.0, "netmask": "255.255.255.255",
           "mode": "tun", "expire_nodest_conn": False,
           "conns": 0, "pkts_in": 999_999_999, "pkts_out": 1_000_000_000, "bytes_in": 99_999_999_999,
           "bytes_out": 100_000_000_000,
           "rate": {"cps": 0, "inpps": 100_000_000, "outpps": 0, "inbps": 1_000_000_000, "outbps": 5},
           "real_servers": [
               _rs("198.19.0.99", 53, "nat", "Masq", 1, 1, 2, sorry=True),
               _rs("198.19.0.22", 53, "fullnat", "FullNat", 1, 0, 0),
               _rs("198.19.0.21", 53, "tun", "Tunnel", 1, 7, 0, health="unchecked"),
           ]}
    tcp = {"protocol": "tcp", "address": "198.18.0.100", "port": 80, "scheduler": "wrr", "flags": [],
           "persistent": 300.0, "netmask": "255.255.255.0", "mode": "nat", "expire_nodest_conn": False,
           "conns": 12345, "pkts_in": 99_999_999, "pkts_out": 100_000_000, "bytes_in": 123_456_789_012,
           "bytes_out": 5_000_000_000_000_000,
           "rate": {"cps": 10, "inpps": 2000, "outpps": 1800, "inbps": 123_456_789, "outbps": 9_876_543},
           "real_servers": [
               _rs("198.19.0.12", 8080, "nat", "Masq", 2, 5, 3, (1000, 99999, 100000, 12_345_678, 123_456_789),
                   rate={"cps": 3, "inpps": 123_456_789, "outpps": 7, "inbps": 100_000_000, "outbps": 999}),
               _rs("198.19.0.13", 80, "dr", "Route", 0, 12, 140, (0, 0, 0, 0, 0), config_weight=3,
                   state="drain", health="down"),
               _rs("198.19.0.11", 8080, "nat", "Masq", 1, 0, 0, (999, 1000, 1, 2, 3)),
           ]}
    return {"version": "0.1.0", "implementation": "native", "event_loop": "asyncio",
            "conn_table": {"entries": 12, "limit": 1048576, "fast_flows": 9},
            "timeouts": {"tcp": 900.0, "tcpfin": 120.0, "udp": 300.0},
            "drops": {"no_service": 3}, "totals": {}, "services": [udp, tcp]}


LIST = (
    "IP Virtual Server version 1.2.1 (size=1048576)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0\n"
    "  -> 198.19.0.11:8080             Masq    1      0          0         \n"
    "  -> 198.19.0.12:8080             Masq    2      5          3         \n"
    "  -> 198.19.0.13:80               Route   0      12         140       \n"
    "UDP  198.18.0.53:53 sh (sh-fallback,sh-port)\n"
    "  -> 198.19.0.21:53               Tunnel  1      7          0         \n"
    "  -> 198.19.0.22:53               FullNat 1      0          0         \n"
    "  -> 198.19.0.99:53               Masq    1      1          2         \n"
)


def test_list_plain():
    assert render_list(snap()) == LIST


def test_list_scripts_can_split_columns():
    rows = [line.split() for line in render_list(snap()).splitlines() if line.startswith("  -> 198")]
    assert rows[2] == ["->", "198.19.0.13:80", "Route", "0", "12", "140"]
    assert all(len(r) == 6 for r in rows)  # the sorry server gets no extra column


def test_list_empty_and_host_mask_and_v6():
    s = snap()
    s["services"] = []
    assert render_list(s) == LIST[:LIST.index("TCP")]
    s = snap()
    s["services"][1]["netmask"] = "255.255.255.255"  # /32: no " mask"
    s["services"][0]["flags"] = []                   # no flags: no parentheses
    s["services"][0]["persistent"] = 60.0
    out = render_list(s).splitlines()
    assert "TCP  198.18.0.100:80 wrr persistent 300" in out
    assert "UDP  198.18.0.53:53 sh persistent 60" in out
    v6 = copy.deepcopy(s["services"][1])
    v6.update(address="2001:db8::1", netmask="128", persistent=0.0,
              real_servers=[_rs("2001:db8::11", 8080, "nat", "Masq", 1, 0, 0)])
    s["services"] = [v6]
    assert render_list(s).splitlines()[3:] == [
        "TCP  [2001:db8::1]:80 wrr",
        "  -> [2001:db8::11]:8080          Masq    1      0          0         ",
    ]


STATS = (
    "IP Virtual Server version 1.2.1 (size=1048576)\n"
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
    "  -> RemoteAddress:Port\n"
    "TCP  198.18.0.100:80                 12345 99999999  100000K     123G    5000T\n"
    "  -> 198.19.0.11:8080                  999     1000        1        2        3\n"
    "  -> 198.19.0.12:8080                 1000    99999   100000 12345678  123456K\n"
    "  -> 198.19.0.13:80                      0        0        0        0        0\n"
    "UDP  198.18.0.53:53                      0  999999K    1000M   99999M     100G\n"
    "  -> 198.19.0.21:53                      0        0        0        0        0\n"
    "  -> 198.19.0.22:53                      0        0        0        0        0\n"
    "  -> 198.19.0.99:53                      0        0        0        0        0\n"
)


def test_list_stats():
    assert render_list(snap(), stats=True) == STATS
    assert render_list(snap(), stats=True, rate=True) == STATS  # stats wins


def test_list_stats_exact():
    lines = render_list(snap(), stats=True, exact=True).splitlines()
    assert lines[3] == ("TCP  198.18.0.100:80                 12345 99999999 100000000 123456789012"
                        " 5000000000000000")
    assert lines[5] == "  -> 198.19.0.12:8080                 1000    99999   100000 12345678 123456789"


def test_list_rate():
    assert render_list(snap(), rate=True) == (
        "IP Virtual Server version 1.2.1 (size=1048576)\n"
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
        "  -> RemoteAddress:Port\n"
        "TCP  198.18.0.100:80                    10     2000     1800  123456K  9876543\n"
        "  -> 198.19.0.11:8080                    0        0        0        0        0\n"
        # servers' CPS/InPPS/OutPPS are " %8llu" (never scaled), only the bit rates go through largenum
        "  -> 198.19.0.12:8080                    3 123456789        7  100000K      999\n"
        "  -> 198.19.0.13:80                      0        0        0        0        0\n"
        "UDP  198.18.0.53:53                      0  100000K        0    1000M        5\n"
        "  -> 198.19.0.21:53                      0        0        0        0        0\n"
        "  -> 198.19.0.22:53                      0        0        0        0        0\n"
        "  -> 198.19.0.99:53                      0        0        0        0        0\n"
    )


@pytest.mark.parametrize("n, text", [
    (0, "        0"), (999, "      999"), (1000, "     1000"), (99999, "    99999"), (100000, "   100000"),
    (99_999_999, " 99999999"),                       # < 100 million: as is
    (100_000_000, "  100000K"), (999_999_999, "  999999K"),              # < 1 billion: K, truncated
    (1_000_000_000, "    1000M"), (99_999_999_999, "   99999M"),         # < 100 billion: M
    (100_000_000_000, "     100G"), (99_999_999_999_999, "   99999G"),   # < 100 trillion: G
    (100_000_000_000_000, "     100T"), (2**64 - 1, "18446744T"),
])
def test_largenum(n, text):
    assert largenum(n) == text


@pytest.mark.parametrize("n, text", [
    (0, "        0"), (12_345_678, " 12345678"), (123_456_789, " 123456789"), (2**64 - 1, " 18446744073709551615"),
])
def test_largenum_exact(n, text):
    assert largenum(n, exact=True) == text


def test_conns():
    rows = [
        {"protocol": "tcp", "expires": 897.6, "state": "ESTABLISHED", "client": "198.18.0.10:43210",
         "virtual": "198.18.0.100:80", "local": "198.18.0.10:43210", "destination": "198.19.0.11:8080",
         "mode": "nat"},
        {"protocol": "udp", "expires": 5.2, "state": "UDP", "client": "198.18.0.20:5353",
         "virtual": "198.18.0.53:53", "local": "198.18.0.20:5353", "destination": "198.19.0.21:53",
         "mode": "tun"},
        # FULLNAT: the local address has no column; an address wider than 18 is not cut
        {"protocol": "tcp", "expires": 7265.0, "state": "FIN_WAIT", "client": "198.118.100.200:65000",
         "virtual": "198.18.0.100:80", "local": "198.18.0.250:40001", "destination": "198.19.0.22:53",
         "mode": "fullnat"},
    ]
    assert render_conns(rows) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 14:57  ESTABLISHED 198.18.0.10:43210  198.18.0.100:80    198.19.0.11:8080\n"
        "UDP 00:05  UDP         198.18.0.20:5353   198.18.0.53:53     198.19.0.21:53\n"
        "TCP 121:05 FIN_WAIT    198.118.100.200:65000 198.18.0.100:80    198.19.0.22:53\n"
    )
    assert render_conns([]) == render_conns(rows).split("TCP 14")[0]


def test_timeouts():
    assert render_timeouts(snap()) == "Timeout (tcp tcpfin udp): 900 120 300\n"
    s = snap()
    s["timeouts"] = {"tcp": 7200.0, "tcpfin": 0.5, "udp": 30.0}
    assert render_timeouts(s) == "Timeout (tcp tcpfin udp): 7200 0 30\n"


def _rich(**kw) -> str:
    con = Console(record=True, width=160, file=io.StringIO())
    render_rich(snap(), console=con, **kw)
    return con.export_text()


def test_rich():
    out = _rich()
    for text in ("0.1.0", "native", "12/1048576", "no_service=3",
                 "TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0",
                 "UDP  198.18.0.53:53 sh (sh-fallback,sh-port)",
                 "198.19.0.99:53 (sorry)", "0 (of 3)", "drain", "down", "unchecked", "FullNat", "Tunnel",
                 "bytes out", "123456K", "100000K", "5000T"):
        assert text in out, text
    assert out.index("198.18.0.100:80") < out.index("198.18.0.53:53")
    assert out.count("(sorry)") == 1


def test_rich_rate_and_exact():
    out = _rich(rate=True)
    assert "bps in" in out and "bytes in" not in out and "123456K" in out
    out = _rich(stats=True, rate=True)  # stats wins
    assert "bytes in" in out
    assert "5000000000000000" in _rich(exact=True)


def test_rich_v6_is_not_markup():
    s = snap()
    s["services"] = [copy.deepcopy(s["services"][1])]
    s["services"][0].update(address="2001:db8::1", netmask="128", persistent=0.0,
                            real_servers=[_rs("2001:db8::11", 8080, "nat", "Masq", 1, 0, 0)])
    con = Console(record=True, width=160, file=io.StringIO())
    render_rich(s, console=con)
    out = con.export_text()
    assert "TCP  [2001:db8::1]:80 wrr" in out and "[2001:db8::11]:8080" in out
