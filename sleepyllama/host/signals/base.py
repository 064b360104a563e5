"""What every activity signal shares: a reading (busy, idle or unknown, with the human reason
that ends up in the journal and in `sleepyllama status`). Their tools run through tools.py.

A signal that cannot be read is UNKNOWN, never IDLE, and the idle decision treats UNKNOWN as
busy: sleepyllama never suspends on an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Activity(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"  # could not be read: counts as busy


@dataclass(frozen=True)
class Reading:
    signal: str
    activity: Activity
    reason: str
    # the fix, where this signal alone might keep the box up for good (a GPU stuck in P0)
    hint: str = ""


class Signal(Protocol):
    name: str

    def read(self) -> Reading: ...
