"""The model servers: a request in flight, work since the last check (a counter that moved), or
a model unloaded, through each server's kind (host/activity.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sleepyllama.config import ServerConfig
from sleepyllama.host.activity import Counter, Unreadable, judge, source_for
from sleepyllama.host.signals.base import Activity, Reading


class ServersSignal:
    """Reads every server's activity source and compares each work counter with the one seen at
    the previous check (`counters`, kept in the state file): a counter that moved means a request
    came, even if it ended long before this look. After read(), `counters` holds the new ones."""

    name = "servers"

    def __init__(self, servers: Sequence[ServerConfig], counters: dict[str, Counter],
                 clock: Callable[[], float] = time.time) -> None:
        self.sources = [(server.name, source_for(server)) for server in servers]
        self.counters = dict(counters)
        self.clock = clock

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
                continue
            busy, reason = judge(name, look, self.counters.get(name), now)
            results.append((Activity.BUSY if busy else Activity.IDLE, reason))
            if look.work is not None:
                self.counters[name] = Counter(look.work, look.epoch, now, look.fingerprint)
        for wanted in (Activity.UNKNOWN, Activity.BUSY):
            if any(activity is wanted for activity, _ in results):
                return Reading(self.name, wanted,
                               "; ".join(reason for activity, reason in results if activity is wanted))
        return Reading(self.name, Activity.IDLE, "; ".join(reason for _, reason in results))


