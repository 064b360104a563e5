"""How a server's use is judged between two idle checks, whatever its kind.

Each kind (sleepyllama/kinds/) reads its server without loading a model and answers three
questions in a Look: is a request in flight now, how far has a work counter moved (so that a
request that came and went between two idle checks still counts), and is the model unloaded (a
server with nothing in memory has nothing to keep the box up for). judge() turns a look and the
counter the previous check stored into a verdict with its human reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sleepyllama import kinds
from sleepyllama.config import ServerConfig
from sleepyllama.kinds.base import Look, Source, Unreadable
from sleepyllama.words import count, format_duration

__all__ = ["Counter", "Look", "Unreadable", "judge", "moved", "source_for"]


@dataclass(frozen=True)
class Counter:
    """A work counter as seen at one idle check, kept in the state file for the next one."""

    work: int | str
    epoch: str
    at: float  # wall-clock seconds
    fingerprint: str = ""


def moved(before: Counter | None, look: Look) -> int | bool:
    """How far the counter moved since `before`: a count, or True when it moved by an amount
    it cannot tell (a fingerprint changed); 0 or False when it did not move."""
    if before is None or look.work is None:
        return 0
    if isinstance(look.work, int) and isinstance(before.work, int):
        if before.epoch != look.epoch or look.work < before.work:
            return look.work  # restarted since: everything it has counted is new
        if look.work > before.work:
            return look.work - before.work
        return look.fingerprint != before.fingerprint  # too small a request to move the count
    return look.work != before.work


def judge(name: str, look: Look, before: Counter | None, now: float) -> tuple[bool, str]:
    """(busy, reason) for one server."""
    if not look.running:
        return False, f"{name}: not running"
    if look.loading:
        return True, f"{name}: loading its model"
    if look.in_flight:
        return True, f"{name}: {count(look.in_flight, 'requests')} in flight"
    distance = moved(before, look)
    if distance and before is not None:
        ago = format_duration(max(0, round(now - before.at)))
        amount = "used" if distance is True else count(distance, look.work_unit)
        return True, f"{name}: {amount} since the last check, {ago} ago"
    if look.unloaded:
        return False, f"{name}: {look.unloaded}"
    if look.work is None and look.in_flight is None:
        return False, f"{name}: its requests cannot be seen (no activity endpoint)"
    since = "nothing since the last check" if before else "first look, counting from now"
    if look.in_flight is None:
        return False, f"{name}: {since}"
    return False, f"{name}: nothing in flight, {since}"


def base_url(health_url: str) -> str:
    parts = urlsplit(health_url)
    return f"{parts.scheme}://{parts.netloc}"


def source_for(server: ServerConfig, timeout: float = 5.0, gentle: bool = False) -> Source:
    """The server's activity source, as its kind reads it; gentle: nothing that counts as use."""
    return kinds.get(server.activity).source(base_url(server.health_url), server.command,
                                             timeout, gentle)
