"""Can the box be woken (host/signals/wake_on_lan.py): ethtool's real output, a stand-in ethtool
(a veth has no Wake-on-LAN) and the real `ip` on this machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sleepyllama.config import Address
from sleepyllama.host.signals import wake_on_lan
from sleepyllama.host.signals.base import Activity

DATA = Path(__file__).parent / "data" / "ethtool"
E1000E = (DATA / "e1000e-wol-off.txt").read_text()
VETH = (DATA / "veth.txt").read_text()


def test_parse_ethtools_wake_on_lines() -> None:
    assert wake_on_lan.parse_ethtool(E1000E) == ("pumbg", "d")
    assert wake_on_lan.parse_ethtool(VETH) == ("", "")


class Box:
    """ip and ethtool as a box with one card would answer."""

    def __init__(self, ethtool: str, set_status: int = 0, routes: str = '[{"dev": "eno1"}]') -> None:
        self.ethtool, self.set_status, self.routes = ethtool, set_status, routes
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        if argv[0] == "ip":
            return 0, self.routes
        if argv[1] == "-s":
            if self.set_status == 0:
                self.ethtool = self.ethtool.replace("Wake-on: d", "Wake-on: g")
            refused = "Cannot set new wake-on-lan settings: Operation not permitted\n"
            return self.set_status, "" if self.set_status == 0 else refused
        return 0, self.ethtool


def test_off_but_supported_is_armed_and_then_reads_on() -> None:
    box = Box(E1000E)
    assert wake_on_lan.problems([], box.run) == []
    assert wake_on_lan.arm([], box.run) == []
    assert ["ethtool", "-s", "eno1", "wol", "g"] in box.calls
    assert "Wake-on-LAN on" in wake_on_lan.reading([], box.run).reason


def test_a_card_without_magic_packet_or_a_refused_setting_strands_the_box() -> None:
    veth = Box(VETH)
    assert wake_on_lan.arm([], veth.run) == ["eno1 cannot wake the box on a magic packet "
                                             "(no Wake-on-LAN)"]
    assert not any(call[1:2] == ["-s"] for call in veth.calls)  # nothing tried on it
    refused = Box(E1000E, set_status=76)
    assert wake_on_lan.arm([], refused.run) == ["cannot turn Wake-on-LAN on for eno1: Cannot set "
                                                "new wake-on-lan settings: Operation not permitted"]
    assert wake_on_lan.reading([], veth.run).activity is Activity.BUSY


def test_the_card_towards_the_proxies_else_the_default_route() -> None:
    box = Box(E1000E)
    wake_on_lan.arm([Address("192.0.2.7", 3939)], box.run)
    assert ["ip", "-j", "route", "get", "192.0.2.7"] in box.calls
    lost = Box(E1000E, routes="[]")
    said = wake_on_lan.arm([], lost.run)
    assert said and "no default route" in said[0]


def test_the_real_ip_finds_loopback_and_leaves_it_out() -> None:
    # a proxy on this very box leads to no card that could wake it
    reading = wake_on_lan.reading([Address("127.0.0.1", 3939)])
    assert reading.activity is not Activity.IDLE or "lo:" not in reading.reason
