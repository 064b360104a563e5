"""The idle decision, pure: readings + the idle state + now -> a verdict with its human reason.

Time is CLOCK_MONOTONIC, which stands still while the box is suspended, together with the boot
id: suspended time and reboots never count as idle. No I/O here; idle_check.py does that.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sleepyllama.config import format_duration
from sleepyllama.host.signals import Activity, Reading


@dataclass(frozen=True)
class IdleState:
    boot_id: str
    idle_since: float | None  # CLOCK_MONOTONIC seconds; None: not idle (or not known to be)


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
    if state is None or state.boot_id != boot_id or (state.idle_since or 0) > now:
        state = IdleState(boot_id, None)  # another boot, or no clock to trust: start over
    active = [r for r in readings if r.activity is not Activity.IDLE]
    if active:
        why = "; ".join(
            r.reason if r.activity is Activity.BUSY else f"{r.signal} unreadable, counted busy: "
            f"{r.reason}" for r in active)
        if all(r.hint for r in active):  # nothing else keeps it up: say how that may be for good
            why += " " + "; ".join(dict.fromkeys(r.hint for r in active))
        return Verdict(Action.STAY_AWAKE, f"busy: {why}", IdleState(boot_id, None), 0.0, None)
    idle_since = state.idle_since if state.idle_since is not None else now
    idle_for = now - idle_since
    quiet = "; ".join(r.reason for r in readings) or "no signal configured"
    new_state = IdleState(boot_id, idle_since)
    if idle_for >= timeout:
        return Verdict(Action.SLEEP, f"idle for {format_duration(round(idle_for))} "
                       f"(timeout {format_duration(timeout)}): {quiet}", new_state, idle_for, 0.0)
    sleep_in = timeout - idle_for
    return Verdict(Action.STAY_AWAKE, f"idle for {format_duration(round(idle_for))}, sleeping in "
                   f"{format_duration(round(sleep_in))}: {quiet}", new_state, idle_for, sleep_in)
