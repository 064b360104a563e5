"""The proxy's state as it is now, kept in NAME.live.json in its StateDirectory for the page
(sleepyllama-web, dashboard/): asleep, waking, awake or did not wake, since when, who waits, and
where the proxy listens (the page's Wake button asks the proxy there). Written atomically, and
only when something in it changed: at most a few times a second while a wake goes on.

What has happened (wakes, give-ups, answers from the cache) is the ledger's; this is only now.
The record, its version and its states are live_state.py's, which the page reads by.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from sleepyllama.files import write_atomic
from sleepyllama.live_state import LiveState, Prewakes
from sleepyllama.proxy.wake import Wake

log = logging.getLogger(__name__)

def wall(loop_time: float | None, loop_now: float) -> float | None:
    """A moment of the event loop's clock as Unix time, for readers in other processes."""
    # to the second: the two clocks drift apart by microseconds between calls
    return None if loop_time is None else round(time.time() - (loop_now - loop_time))


def document(name: str, backend: str, listen: list[str], wake: Wake, loop_now: float,
             prewakes: Prewakes | None = None, running: bool = True) -> dict:
    """listen: where its UDP hint sockets are ("host:port"), for the page's Wake button;
    prewakes: the next learned pre-wake and what was learned (prewaker.py)."""
    view = wake.view()
    return LiveState(
        name=name, backend=backend, listen=tuple(listen), pid=os.getpid(), running=running,
        state=view.state, since=wall(view.since, loop_now), waking_since=wall(view.waking_since, loop_now),
        signals=view.signals, clients_waiting=view.clients, typical_wake=view.typical_wake,
        asleep_as=view.asleep_as, last_ready=wall(view.last_ready, loop_now),
        prewakes=prewakes).to_json()


class LiveFile:
    """NAME.live.json, rewritten when what it shows changed (not merely its clock)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written: dict | None = None

    def update(self, name: str, backend: str, listen: list[str], wake: Wake,
               loop_now: float, *, running: bool = True, prewakes: Prewakes | None = None
               ) -> None:
        if self.path is None:
            return
        current = document(name, backend, listen, wake, loop_now, prewakes, running)
        if current == self.written:
            return
        try:
            write_atomic(self.path, json.dumps(current, separators=(",", ":")).encode(), 0o600)
        except OSError as error:
            log.warning("cannot write %s: %s", self.path, error.strerror)
            return
        self.written = current
