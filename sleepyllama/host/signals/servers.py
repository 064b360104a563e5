"""The model servers: a request in flight, work since the last check (a counter that moved), or
a model unloaded, through each server's kind (host/activity.py). A server (re)started since the
last check counts as used: someone just restarted it (install.sh, `sleepyllama restart`, a
config change) and is about to try it, and a fresh counter of 0 would read as idle."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sleepyllama import systemd
from sleepyllama.config import ServerConfig
from sleepyllama.host.activity import Counter, Unreadable, judge, source_for
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.words import format_duration


class ServersSignal:
    """Reads every server's activity source and compares each work counter with the one seen at
    the previous check (`counters`, kept in the state file): a counter that moved means a request
    came, even if it ended long before this look. After read(), `counters` holds the new ones."""

    name = "servers"

    def __init__(self, servers: Sequence[ServerConfig], counters: dict[str, Counter],
                 clock: Callable[[], float] = time.time, last_check: float | None = None,
                 started: Callable[[str], float | None] | None = None) -> None:
        self.sources = [(server.name, source_for(server)) for server in servers]
        self.counters = dict(counters)
        self.answered: dict[str, bool] = {}  # by server, at the last read: its activity was read
        self.clock = clock
        self.last_check = last_check  # CLOCK_REALTIME of the previous check
        self.started = started or unit_started

    def read(self) -> Reading:
        if not self.sources:
            return Reading(self.name, Activity.IDLE, "no [server.*] configured")
        results: list[tuple[Activity, str]] = []
        for name, source in self.sources:
            now = self.clock()
            try:
                look = source.look()
            except Unreadable as error:
                results.append((Activity.UNKNOWN, f"{name}: {error}"))
                self.answered[name] = False
                continue
            self.answered[name] = True
            busy, reason = judge(name, look, self.counters.get(name), now)
            began = self.started(name) if not busy and self.last_check is not None else None
            if began is not None and self.last_check is not None and began > self.last_check:
                busy, reason = True, (f"{name}: started {format_duration(max(0, round(now - began)))}"
                                      " ago (a start or restart counts as use)")
            results.append((Activity.BUSY if busy else Activity.IDLE, reason))
            if look.work is not None:
                self.counters[name] = Counter(look.work, look.epoch, now, look.fingerprint)
        for wanted in (Activity.UNKNOWN, Activity.BUSY):
            if any(activity is wanted for activity, _ in results):
                return Reading(self.name, wanted,
                               "; ".join(reason for activity, reason in results if activity is wanted))
        return Reading(self.name, Activity.IDLE, "; ".join(reason for _, reason in results))




def unit_started(name: str) -> float | None:
    """When the server's unit last started (CLOCK_REALTIME); None where systemd cannot say."""
    try:
        return systemd.unit_details(systemd.server_unit(name)).started
    except Exception:  # no systemd bus (a test, a container without one): nothing to say
        return None
