"""The awake windows as an idle signal (host/signals/schedule.py): inside one the box stays
up and says until when (the windows themselves: tests/test_windows.py; the timer that wakes the
box at each start: tests/host/test_schedule.py)."""

from __future__ import annotations

import time

from sleepyllama import config
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.schedule import ScheduleSignal


def at(weekday: int, hour: int, minute: int = 0) -> time.struct_time:
    """A moment on 2026-11-23 (a Monday) + weekday days."""
    return time.localtime(time.mktime((2026, 11, 23 + weekday, hour, minute, 0, 0, 0, -1)))


def test_inside_a_window_the_idle_check_stays_awake_and_says_why() -> None:
    windows = config.parse('[schedule]\nawake = ["Mon..Fri 08:30..18:00"]\n').schedule
    inside = ScheduleSignal(windows, lambda: at(1, 9)).read()
    assert inside.activity is Activity.BUSY
    assert inside.reason == "inside the awake window Mon..Fri 08:30..18:00 (until 18:00)"
    assert ScheduleSignal(windows, lambda: at(1, 19)).read().activity is Activity.IDLE
