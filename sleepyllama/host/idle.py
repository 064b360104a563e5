"""The idle decision, pure: readings + the idle state + now -> a verdict with its human reason.

Time is CLOCK_MONOTONIC, which stands still while the box is suspended, together with the boot
id: suspended time and reboots never count as idle. No I/O here; idle_check.py does that.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.words import format_duration

# The timer looks every 30 s. Time between two looks further apart than this was not watched
# (the timer stopped, the box too loaded to run it): it never counts as idle.
MAX_UNWATCHED = 180.0


@dataclass(frozen=True)
class IdleState:
    boot_id: str
    idle_since: float | None  # CLOCK_MONOTONIC seconds; None: not idle (or not known to be)
    looked_at: float | None = field(default=None, compare=False)  # CLOCK_MONOTONIC of the look


class Action(enum.Enum):
    STAY_AWAKE = "stay awake"
    SLEEP = "sleep"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    state: IdleState  # to store for the next check
    idle_for: float  # seconds idle so far (0 when busy)
    sleep_in: float | None  # seconds until sleep if nothing changes; None when busy


def decide(readings: Sequence[Reading], state: IdleState | None, now: float, boot_id: str,
           timeout: float) -> Verdict:
    if (state is None or state.boot_id != boot_id or (state.idle_since or 0) > now
            or (state.idle_since is not None and state.looked_at is None)):
        # another boot, or no clock to trust (a state written before looks were timed could
        # count hours without a check as idle): start over
        state = IdleState(boot_id, None)
    unwatched = ""
    if state.idle_since is not None and state.looked_at is not None and (
            now - state.looked_at > MAX_UNWATCHED):
        # only time between looks counts: a timer stopped for 2 h must not mean 2 h idle
        gap = now - state.looked_at
        state = IdleState(boot_id, state.idle_since + gap - MAX_UNWATCHED)
        unwatched = f" (no check for {format_duration(round(gap))}: that time does not count)"
    active = [r for r in readings if r.activity is not Activity.IDLE]
    if active:
        why = "; ".join(
            r.reason if r.activity is Activity.BUSY else f"{r.signal} unreadable, counted busy: "
            f"{r.reason}" for r in active)
        if all(r.hint for r in active):  # nothing else keeps it up: say how that may be for good
            why += " " + "; ".join(dict.fromkeys(r.hint for r in active))
        return Verdict(Action.STAY_AWAKE, f"busy: {why}", IdleState(boot_id, None, now), 0.0, None)
    idle_since = state.idle_since if state.idle_since is not None else now
    idle_for = now - idle_since
    quiet = ("; ".join(r.reason for r in readings) or "no signal configured") + unwatched
    new_state = IdleState(boot_id, idle_since, now)
    if idle_for >= timeout:
        return Verdict(Action.SLEEP, f"idle for {format_duration(round(idle_for))} "
                       f"(timeout {format_duration(timeout)}): {quiet}", new_state, idle_for, 0.0)
    sleep_in = timeout - idle_for
    return Verdict(Action.STAY_AWAKE, f"idle for {format_duration(round(idle_for))}, sleeping in "
                   f"{format_duration(round(sleep_in))}: {quiet}", new_state, idle_for, sleep_in)
