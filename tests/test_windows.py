"""Awake windows as the config writes them (windows.py): parsing, a bad one as a config error in
one line, and being inside one."""

from __future__ import annotations

import time

import pytest

from sleepyllama import config
from sleepyllama.windows import current_window, parse_window


def at(weekday: int, hour: int, minute: int = 0) -> time.struct_time:
    """A moment on 2026-11-23 (a Monday) + weekday days."""
    return time.localtime(time.mktime((2026, 11, 23 + weekday, hour, minute, 0, 0, 0, -1)))


def test_windows_and_being_inside_one() -> None:
    workdays = parse_window("Mon..Fri 08:30..18:00")
    assert workdays.calendar == "Mon,Tue,Wed,Thu,Fri 08:30:00"
    assert workdays.contains(at(0, 8, 30)) and workdays.contains(at(4, 17, 59))
    assert not workdays.contains(at(0, 8, 29)) and not workdays.contains(at(0, 18, 0))
    assert not workdays.contains(at(5, 12))  # Saturday
    every_day = parse_window("07:00..24:00")
    assert every_day.days == frozenset(range(7)) and every_day.contains(at(6, 23, 59))
    mixed = parse_window("Mon,Wed..Fri 10:00..11:00")
    assert mixed.calendar == "Mon,Wed,Thu,Fri 10:00:00"
    assert current_window([workdays, mixed], at(2, 10, 30)) == workdays


@pytest.mark.parametrize(("window", "words"), [
    ("Fri..Mon 08:00..09:00", "a range of days goes forward"),
    ("Mon..Fri 18:00..08:00", "ends before it starts"),
    ("Monday 08:00..09:00", "expected a window like"),
    ("Mon 25:00..26:00", "is not a time of day"),
    ("Mon..Fry 08:00..09:00", "days are Mon Tue"),
])
def test_a_bad_window_is_a_config_error_in_one_line(window: str, words: str) -> None:
    with pytest.raises(config.ConfigError, match=words) as error:
        config.parse(f'[schedule]\nawake = ["{window}"]\n')
    assert "[schedule] awake:" in str(error.value) and "\n" not in str(error.value)
