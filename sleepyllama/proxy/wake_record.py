"""The record of the current wake and what past ones taught: pure, handed the clock's times.

One wake runs from its first client to ready (or to no client waiting). It keeps its first
client (who keeps waking the box?), the signals that went out and the last probe's answer; once
it gives up, clients arriving within RECENT_GIVE_UP are held only as long as a fresh attempt
needs, and what past wakes took sets a 503's Retry-After.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sleepyllama import history, kinds, ledger, sleep_actions
from sleepyllama.config import DEFAULT_WAKE_TIMEOUT
from sleepyllama.proxy.reply import RETRY_AFTER
from sleepyllama.words import format_duration

# after a wake gave up, a client arriving within RECENT_GIVE_UP is held only as long as a fresh
# attempt needs to show the box is still down: the openai client's two retries of a 503 (and a
# user pressing "regenerate") no longer cost 3 x wake_timeout each
RECENT_GIVE_UP = 600.0
RECHECK_FRACTION, RECHECK_MIN = 1 / 6, 5.0
REMEMBERED = 10  # past wakes that set what a wake costs


@dataclass
class WakeRecord:
    started: float | None = None  # when the first signal of the current wake went out
    signals: int = 0  # signals that went out in the current wake
    first: dict[str, object] = field(default_factory=dict)  # its first client, for the ledger
    last_probe: str = ""  # the last ready check's answer ("HTTP 503", "Connection refused")
    up_after: float | None = None  # seconds into the wake when the box itself first answered
    served_after: float | None = None  # ... when its server first answered HTTP (any status)
    refused_since: float | None = None  # ... since when every answer was "Connection refused"
    gave_up: bool = False  # a client of the current (or last) wake was given up on
    last_give_up: float | None = None  # when the last wake gave up
    past: list[ledger.Wake] = field(default_factory=list)  # the last wakes, as in the ledger
    # how the box said it sleeps (its "sleeping" hint: sleep_actions.py); "": it never said
    asleep_as: str = ""
    # the box said it sleeps (box-sleeping in the ledger) and has not been seen up since: the
    # sleep the page counts is open until it is (box-up, or a wake's entry)
    sleep_open: bool = False

    def begin(self) -> None:
        self.signals, self.gave_up, self.last_probe, self.up_after = 0, False, "", None
        self.served_after = self.refused_since = None

    def probed(self, answer: str, seconds: float) -> None:
        """A ready check's answer, `seconds` into the wake. Any HTTP answer, or a refusal (its
        kernel answers), says the box itself is up: the rest is the server loading."""
        self.last_probe = answer
        if self.up_after is None and (answer.startswith("HTTP ") or answer == "Connection refused"):
            self.up_after = seconds
        if self.served_after is None and answer.startswith("HTTP "):
            self.served_after = seconds
        if answer != "Connection refused":
            self.refused_since = None
        elif self.refused_since is None:
            self.refused_since = seconds

    def refused_too_long(self, seconds: float, kind: str) -> bool:
        """The box has answered "Connection refused" for longer than its server needs to start
        listening: a wrong port, or a server listening on 127.0.0.1 only. The limit is the
        kind's (listens_within), or three times the longest such wait of the past wakes here."""
        if self.refused_since is None:
            return False
        limit = kinds.get(kind).listens_within if kind in kinds.KINDS else None
        past = [wake.served_after - wake.up_after for wake in self.past
                if wake.served_after is not None and wake.up_after is not None]
        if past:
            learned = max(15.0, 3 * max(past))
            limit = learned if limit is None else min(limit, learned)
        return limit is not None and seconds - self.refused_since > limit
    def first_signal(self, now: float, peer: str, request: str, agent: str,
                     noted: dict[str, object] | None = None) -> None:
        self.started = now
        self.first = {"first": peer, "request": request, **({"agent": agent} if agent else {}),
                      **(noted or {})}

    def ready(self, seconds: float, woken: bool) -> None:
        """The backend answered 200 `seconds` after the wake began (woken: by its signals)."""
        self.last_give_up = None
        if woken:
            self.sleep_open = False  # its wake entry ends the sleep
            self.past = [*self.past, ledger.Wake(ready_after=seconds, **self.origin(),
                                                 **self.phases())][-REMEMBERED:]

    def phases(self) -> dict[str, float]:
        """For a wake's ledger entry: when the box, then its server, first answered."""
        return {key: round(value, 1) for key, value in (("up_after", self.up_after),
                                                        ("served_after", self.served_after))
                if value is not None}

    def action(self) -> sleep_actions.SleepAction:
        return sleep_actions.get(self.asleep_as)

    def origin(self) -> dict[str, str]:
        """For a wake's ledger entry: what it woke the box from, where the box said."""
        return {"woke_from": self.asleep_as} if self.asleep_as else {}

    def wake_timeout(self, configured: float) -> float:
        """The configured wake_timeout; where it is the default and the box powers off, one a
        cold boot fits in."""
        if configured == DEFAULT_WAKE_TIMEOUT and not self.action().resumes:
            return max(configured, sleep_actions.COLD_BOOT_WAKE_TIMEOUT)
        return configured

    def typical(self) -> tuple[float, int] | None:
        """(median seconds, wakes) of the past wakes from the way the box sleeps now: a cold
        boot teaches nothing about a resume from suspend. Wakes from before the box said count
        as from suspend, the only way it slept then."""
        action = self.action().name
        return history.typical_wake([wake for wake in self.past if wake.slept_as == action])

    def expectation(self) -> str:
        """What the box does while it wakes, and what that usually takes here, for a person
        (the progress in a stream); "" for a suspend before any was measured."""
        action, typical = self.action(), self.typical()
        if typical is not None:
            return f"{action.waking}: usually {format_duration(round(typical[0]))} here"
        if action.name == sleep_actions.DEFAULT:
            return ""
        return f"{action.waking}: about {format_duration(round(action.typical_wake))}"

    def answered(self) -> bool:
        """The backend answered its ready check, in a wake or outside one: a failed wake is over
        (STATUS stops saying it, holds are whole again). True where that ends a sleep the box
        told of (to be recorded: box-up)."""
        self.gave_up, self.last_give_up = False, None
        ended, self.sleep_open = self.sleep_open, False
        return ended

    def give_up(self, now: float) -> bool:
        """A client waited too long; True the first time in this wake (log and record it)."""
        if self.gave_up:
            return False
        self.gave_up, self.last_give_up = True, now
        return True

    def phase(self) -> str:
        """"loading" once the box answers its ready check, not yet with 200; "refused" while the
        box answers but nothing listens on the port; else "waking"."""
        if self.last_probe.startswith("HTTP "):
            return "loading"
        return "refused" if self.last_probe == "Connection refused" else "waking"

    def hold_limit(self, now: float, wake_timeout: float) -> float:
        """How long a new client is held: wake_timeout, or after a recent give-up only as long
        as a fresh attempt needs to show that the box is still down."""
        wake_timeout = self.wake_timeout(wake_timeout)
        if self.last_give_up is not None and now - self.last_give_up < RECENT_GIVE_UP:
            return min(wake_timeout, max(RECHECK_MIN, wake_timeout * RECHECK_FRACTION))
        return wake_timeout

    def earlier_attempt(self, now: float, arrived: float, wake_timeout: float) -> str:
        """For a 503: the attempt that had failed before this client came, if one did."""
        before = self.last_give_up
        if before is None or before >= arrived:
            return ""
        return (f"it did not wake within {format_duration(wake_timeout)} at the attempt "
                f"{format_duration(round(now - before))} ago either")

    def retry_after(self) -> int:
        """What a 503's Retry-After says: as long as a wake from the way the box sleeps takes
        here (the median of the last ones); before any was seen, RETRY_AFTER for a resume, the
        action's usual time for a cold boot."""
        typical = self.typical()
        if typical is None:
            action = self.action()
            return RETRY_AFTER if action.resumes else math.ceil(action.typical_wake)
        return max(5, min(300, math.ceil(typical[0])))

    @classmethod
    def remembering(cls, entries: Sequence[ledger.Entry]) -> WakeRecord:
        """A record that knows the past wakes of a ledger, and how the box last said it sleeps."""
        said = [entry for entry in entries if isinstance(entry, ledger.BoxSleeping)]
        sleep_open = False
        for entry in entries:
            if isinstance(entry, ledger.BoxSleeping):
                sleep_open = True
            elif ledger.ends_a_sleep(entry):
                sleep_open = False
        wakes = [entry for entry in entries if isinstance(entry, ledger.Wake)]
        return cls(past=wakes[-REMEMBERED:],
                   asleep_as=said[-1].action if said else "", sleep_open=sleep_open)

