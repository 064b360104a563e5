"""Can the box be woken (host/wake_on_lan.py): ethtool's real output, a stand-in ethtool
(a veth has no Wake-on-LAN) and the real `ip` on this machine."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from sleepyllama.config import Address
from sleepyllama.host import wake_on_lan
from sleepyllama.host.signals.base import Activity
from sleepyllama.tools import TOOL_PATH

from conftest import TESTS

DATA = TESTS / "data" / "ethtool"
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
    """A proxy on this very box leads to no card that could wake it: the default route's
    cards are asked instead. (It passed on a machine without ethtool without reaching this.)"""
    if shutil.which("ip", path=TOOL_PATH) is None:
        pytest.skip("no ip (iproute2) on this machine: the real route cannot be asked")
    asked: list[list[str]] = []

    def real(argv: Sequence[str]) -> tuple[int, str]:
        asked.append(list(argv))
        return wake_on_lan.run(argv)

    # what the real ip says here: 127.0.0.1 goes through lo, and the default route (if any)
    assert wake_on_lan._devices(real(["ip", "-j", "route", "get", "127.0.0.1"])[1]) == ["lo"]
    default = list(dict.fromkeys(wake_on_lan._devices(
        real(["ip", "-j", "route", "show", "default"])[1])))
    asked.clear()
    if default:
        assert wake_on_lan.cards_on_the_way([Address("127.0.0.1", 3939)], real) == default
        assert "lo" not in default
    else:
        with pytest.raises(wake_on_lan.CannotTell, match="no network card leads to the proxies"):
            wake_on_lan.cards_on_the_way([Address("127.0.0.1", 3939)], real)
    assert asked[0] == ["ip", "-j", "route", "get", "127.0.0.1"]


def sysfs(tmp_path: Path, links: dict[str, list[str]], hardware: list[str]) -> Path:
    """A /sys/class/net: each device's lower_* links, and a device/ behind each real card."""
    net = tmp_path / "net"
    for name in {*links, *hardware, *(n for below in links.values() for n in below)}:
        (net / name).mkdir(parents=True, exist_ok=True)
    for name, below in links.items():
        for lower in below:
            (net / name / f"lower_{lower}").symlink_to(f"../{lower}")
    for name in hardware:
        (net / name / "device").mkdir()
    return net


class Cards(Box):
    """ip leads to `device`; ethtool answers each card as given."""

    def __init__(self, device: str, answers: dict[str, str]) -> None:
        super().__init__("", routes=f'[{{"dev": "{device}"}}]')
        self.answers = answers

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        if argv[0] == "ip":
            return 0, self.routes
        if argv[1] == "-s":
            self.answers[argv[2]] = self.answers[argv[2]].replace("Wake-on: d", "Wake-on: g")
            return 0, ""
        return 0, self.answers[argv[1]]


def test_a_bridge_is_woken_through_its_real_port_not_its_vms(tmp_path: Path) -> None:
    # Proxmox's vmbr0: the board's card and a VM's tap port under it
    net = sysfs(tmp_path, {"vmbr0": ["eno1", "tap100i0"]}, hardware=["eno1"])
    assert wake_on_lan.physical_cards("vmbr0", net) == ["eno1"]
    box = Cards("vmbr0", {"eno1": E1000E, "vmbr0": VETH, "tap100i0": VETH})
    assert wake_on_lan.arm([], box.run, net) == []
    assert ["ethtool", "-s", "eno1", "wol", "g"] in box.calls
    assert not any(call[:2] == ["ethtool", "vmbr0"] for call in box.calls)


def test_a_vlan_on_a_bond_reaches_the_bonds_cards(tmp_path: Path) -> None:
    net = sysfs(tmp_path, {"bond0.10": ["bond0"], "bond0": ["eno1", "eno2"]},
                hardware=["eno1", "eno2"])
    assert wake_on_lan.physical_cards("bond0.10", net) == ["eno1", "eno2"]
    neither = Cards("bond0.10", {"eno1": VETH, "eno2": VETH})
    assert wake_on_lan.problems([], neither.run, net) == [
        "none of the cards under bond0.10 (eno1, eno2) can wake the box on a magic packet"]
    one = Cards("bond0.10", {"eno1": VETH, "eno2": E1000E})
    assert wake_on_lan.problems([], one.run, net) == []


def test_a_virtual_device_with_nothing_below_stands_for_itself(tmp_path: Path) -> None:
    net = sysfs(tmp_path, {}, hardware=[])
    (net / "wol0").mkdir(parents=True)
    assert wake_on_lan.physical_cards("wol0", net) == ["wol0"]
    # and this machine's own devices: whatever they are, each resolves to something
    for device in Path("/sys/class/net").iterdir():
        assert wake_on_lan.physical_cards(device.name)
