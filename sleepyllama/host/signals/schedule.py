"""The awake windows of [schedule]: inside one the box stays up."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.windows import Window, current_window


class ScheduleSignal:
    name = "schedule"

    def __init__(self, windows: Sequence[Window],
                 clock: Callable[[], time.struct_time] = time.localtime) -> None:
        self.windows, self.clock = windows, clock

    def read(self) -> Reading:
        now = self.clock()
        window = current_window(self.windows, now)
        if window is None:
            return Reading(self.name, Activity.IDLE, "outside the awake windows")
        until = f"{window.end // 60:02d}:{window.end % 60:02d}"
        return Reading(self.name, Activity.BUSY, f"inside the awake window {window.text} "
                       f"(until {until})")

