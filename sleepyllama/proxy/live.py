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

def state_of(wake: Wake) -> str:
    """One word for the page: the wake under way or its failure, else the latest evidence
    (an answer: awake, until a failed connect or a "sleeping" hint says otherwise); "unknown"
    before any, unless the box said, before a restart of ours, that it went to sleep and has
    not been seen up since (the ledger says)."""
    if wake.record.started is not None:
        return "waking"
    if wake.ready:
        return "awake"
    if wake.record.gave_up:
        return "did-not-wake"
    word = wake.belief.readiness.last_word()
    return word or ("asleep" if wake.record.sleep_open else "unknown")


def wall(loop_time: float | None, loop_now: float) -> float | None:
    """A moment of the event loop's clock as Unix time, for readers in other processes."""
    # to the second: the two clocks drift apart by microseconds between calls
    return None if loop_time is None else round(time.time() - (loop_now - loop_time))


def document(name: str, backend: str, listen: list[str], wake: Wake, loop_now: float,
             since: float, prewakes: Prewakes | None = None, running: bool = True) -> dict:
    """listen: where its UDP hint sockets are ("host:port"), for the page's Wake button;
    prewakes: the next learned pre-wake and what was learned (prewaker.py)."""
    typical = wake.record.typical()
    return LiveState(
        name=name, backend=backend, listen=tuple(listen), pid=os.getpid(), running=running,
        state=state_of(wake), since=since,
        waking_since=wall(wake.record.started, loop_now),
        signals=wake.record.signals if wake.record.started is not None else 0,
        clients_waiting=wake.clients_shown(),
        typical_wake=round(typical[0], 1) if typical else None,
        asleep_as=wake.record.asleep_as,
        last_ready=wall(wake.belief.readiness.last_ready, loop_now),
        prewakes=prewakes).to_json()


class LiveFile:
    """NAME.live.json, rewritten when the state changed (not merely its clock)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written: dict | None = None
        self.state, self.since = "", time.time()

    def update(self, name: str, backend: str, listen: list[str], wake: Wake,
               loop_now: float, *, running: bool = True, prewakes: Prewakes | None = None
               ) -> None:
        if self.path is None:
            return
        state = state_of(wake)
        if state != self.state:
            self.state, self.since = state, round(time.time())
        current = document(name, backend, listen, wake, loop_now, self.since, prewakes, running)
        if current == self.written:
            return
        try:
            write_atomic(self.path, json.dumps(current, separators=(",", ":")).encode(), 0o600)
        except OSError as error:
            log.warning("cannot write %s: %s", self.path, error.strerror)
            return
        self.written = current
