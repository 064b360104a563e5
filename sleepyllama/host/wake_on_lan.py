"""Can the box be woken once it sleeps? Wake-on-LAN on the network cards the proxies reach it
through ([notify] proxies, else the default route).

Drivers, NetworkManager and reboots turn Wake-on-LAN off ("WoL works once, then stops"), so the
sleep sequence arms it right before every suspend (`ethtool -s IFACE wol g`) and does not suspend
a box that no magic packet could wake: it stays up and says why. `[idle] woken_by = "other"`
says that something else wakes the box (a smart plug, IPMI, an RTC schedule): then nothing here
is asked.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepyllama.config import Address
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.tools import TOOL_PATH, bounded_output

log = logging.getLogger(__name__)

TIMEOUT = 10.0
MAX_OUTPUT = 1 << 16
MAGIC_PACKET = "g"  # ethtool's letter for "wake on a magic packet"
NET = Path("/sys/class/net")

Run = Callable[[Sequence[str]], tuple[int, str]]


class CannotTell(Exception):
    """Wake-on-LAN could not be read (no ethtool, no route): counted as "cannot be woken"."""


@dataclass(frozen=True)
class Card:
    name: str
    supports: str  # ethtool's "Supports Wake-on:" letters; "" when the driver has none
    current: str  # its "Wake-on:" letters; "d" is disabled


def parse_ethtool(output: str) -> tuple[str, str]:
    """(supported, current) Wake-on letters from `ethtool IFACE`; ("", "") when the driver
    reports no Wake-on-LAN at all (a veth, a Wi-Fi card)."""
    supports = current = ""
    for line in output.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Supports Wake-on":
            supports = value.strip()
        elif key == "Wake-on":
            current = value.strip()
    return supports, current


def problem(card: Card) -> str | None:
    """Why this card cannot wake the box, or None."""
    if MAGIC_PACKET not in card.supports:
        said = f"Supports Wake-on: {card.supports}" if card.supports else "no Wake-on-LAN"
        return f"{card.name} cannot wake the box on a magic packet ({said})"
    return None


def run(argv: Sequence[str]) -> tuple[int, str]:
    tool = shutil.which(argv[0], path=TOOL_PATH)
    if tool is None:
        package = "iproute2" if argv[0] == "ip" else argv[0]
        raise CannotTell(f"{argv[0]} is not installed (apt install {package})")
    try:
        return bounded_output([tool, *argv[1:]], TIMEOUT, MAX_OUTPUT)
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        raise CannotTell(f"{argv[0]}: {error}") from None


def _devices(routes: str) -> list[str]:
    try:
        listed = json.loads(routes or "[]")
        return [route["dev"] for route in listed if isinstance(route, dict) and route.get("dev")]
    except (ValueError, TypeError) as error:
        raise CannotTell(f"ip printed no routes it could read: {error}") from None


def _addresses(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})[:1]
        except OSError:
            return []


def cards_on_the_way(proxies: Sequence[Address], run: Run = run) -> list[str]:
    """The network cards that lead to the proxies (a proxy on this very box leads nowhere);
    without any, those of the default route."""
    names: list[str] = []
    for proxy in proxies:
        for address in _addresses(proxy.host):
            status, output = run(["ip", "-j", "route", "get", address])
            if status == 0:
                names += [name for name in _devices(output) if name != "lo"]
    if not names:
        status, output = run(["ip", "-j", "route", "show", "default"])
        names = _devices(output) if status == 0 else []
    if not names:
        raise CannotTell("no network card leads to the proxies" if proxies else
                         "no default route, and no [notify] proxies to find the card by")
    return list(dict.fromkeys(names))


def physical_cards(name: str, net: Path = NET) -> list[str]:
    """The hardware cards under a route's device: a bridge's or a bond's ports and a VLAN's
    card (sysfs' lower_* links, followed down), those with a device behind them; a veth or a
    VM's tap port has none. A device with no such card stands for itself."""
    found: list[str] = []
    seen: set[str] = set()

    def down(current: str) -> None:
        if current in seen:
            return
        seen.add(current)
        lower = sorted(link.name.removeprefix("lower_") for link in (net / current).glob("lower_*"))
        if not lower and (net / current / "device").exists():
            found.append(current)
        for below in lower:
            down(below)

    down(name)
    return found or [name]


@dataclass(frozen=True)
class Route:
    """A way to the proxies: the device a route leads through, and the cards that carry it."""

    device: str
    cards: tuple[Card, ...]

    def problem(self) -> str | None:
        """Why no magic packet would wake the box on this way, or None."""
        if any(MAGIC_PACKET in card.supports for card in self.cards):
            return None
        if len(self.cards) == 1 and self.cards[0].name == self.device:
            return problem(self.cards[0])
        names = ", ".join(card.name for card in self.cards)
        return f"none of the cards under {self.device} ({names}) can wake the box on a magic packet"


def survey(proxies: Sequence[Address], run: Run = run, net: Path = NET) -> list[Route]:
    """Each way to the proxies, with its cards as ethtool reads them (CannotTell when it cannot)."""
    return [Route(device, tuple(read_card(card, run) for card in physical_cards(device, net)))
            for device in cards_on_the_way(proxies, run)]


def read_card(name: str, run: Run = run) -> Card:
    status, output = run(["ethtool", name])
    if status != 0:
        first = (output.strip() or "no output").splitlines()[0]
        raise CannotTell(f"ethtool {name} exited with status {status}: {first}")
    return Card(name, *parse_ethtool(output))


def arm(proxies: Sequence[Address], run: Run = run, net: Path = NET) -> list[str]:
    """Arm Wake-on-LAN (magic packet) on every card on the way that can do it, where it is off;
    what keeps the box from being woken, one line each (empty: it can be woken)."""
    try:
        routes = survey(proxies, run, net)
    except CannotTell as error:
        return [f"cannot tell whether a magic packet can wake the box: {error}"]
    found = [why for route in routes if (why := route.problem())]
    for card in dict.fromkeys(card for route in routes for card in route.cards):
        if MAGIC_PACKET not in card.supports or MAGIC_PACKET in card.current:
            continue
        status, output = run(["ethtool", "-s", card.name, "wol", MAGIC_PACKET])
        if status != 0:
            first = (output.strip() or "no output").splitlines()[0]
            found.append(f"cannot turn Wake-on-LAN on for {card.name}: {first}")
        else:
            log.info("Wake-on-LAN was off on %s (Wake-on: %s): turned on (g) before the "
                     "suspend", card.name, card.current or "?")
    return found


def problems(proxies: Sequence[Address], run: Run = run, net: Path = NET) -> list[str]:
    """What would keep a magic packet from waking the box, changing nothing (check, dry runs)."""
    try:
        return [why for route in survey(proxies, run, net) if (why := route.problem())]
    except CannotTell as error:
        return [f"cannot tell whether a magic packet can wake the box: {error}"]


def reading(proxies: Sequence[Address], run: Run = run, net: Path = NET) -> Reading:
    """For `check`: whether the box can be woken, and how each card stands."""
    try:
        routes = survey(proxies, run, net)
    except CannotTell as error:
        return Reading("wake-on-lan", Activity.UNKNOWN, str(error))
    found = [why for route in routes if (why := route.problem())]
    if found:
        return Reading("wake-on-lan", Activity.BUSY, "; ".join(found))
    said = [f"{card.name}: Wake-on-LAN " + ("on" if MAGIC_PACKET in card.current else
                                            "off, turned on before each suspend")
            for route in routes for card in route.cards if MAGIC_PACKET in card.supports]
    return Reading("wake-on-lan", Activity.IDLE, ", ".join(dict.fromkeys(said)))
