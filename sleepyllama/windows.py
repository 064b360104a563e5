"""Awake windows as the config writes them: "Mon..Fri 08:30..18:00", "Sat,Sun 10:00..22:00",
"07:00..09:00" (every day). Pure: parsing, and whether a moment lies inside one. The config reads
them; the inference host's schedule.py turns them into its wake timer."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW = re.compile(r"(?:(?P<days>[A-Za-z]{3}(?:(?:\.\.|,)[A-Za-z]{3})*)\s+)?"
                     r"(?P<start>\d{1,2}:\d{2})\.\.(?P<end>\d{1,2}:\d{2})")


@dataclass(frozen=True)
class Window:
    text: str  # as written, for messages
    days: frozenset[int]  # 0 = Monday, as time.struct_time.tm_wday
    start: int  # minutes after midnight
    end: int
    calendar: str  # systemd OnCalendar= for its start

    def contains(self, moment: time.struct_time) -> bool:
        minute = moment.tm_hour * 60 + moment.tm_min
        return moment.tm_wday in self.days and self.start <= minute < self.end


def _minutes(text: str, window: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 24 or minutes > 59 or hours * 60 + minutes > 24 * 60:
        raise ValueError(f"{text!r} in {window!r} is not a time of day")
    return hours * 60 + minutes


def _days(text: str | None, window: str) -> frozenset[int]:
    if text is None:
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        ends = part.split("..")
        try:
            first, last = (DAYS.index(end.capitalize()) for end in (ends[0], ends[-1]))
        except ValueError:
            raise ValueError(f"{part!r} in {window!r}: days are Mon Tue Wed Thu Fri Sat Sun") from None
        if len(ends) > 2 or last < first:
            raise ValueError(f"{part!r} in {window!r}: a range of days goes forward, "
                             "like Mon..Fri")
        days.update(range(first, last + 1))
    return frozenset(days)


def parse_window(text: object) -> Window:
    """ "Mon..Fri 08:30..18:00", "Sat,Sun 10:00..22:00", "07:00..09:00" (every day)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a window like \"Mon..Fri 08:30..18:00\", not {text!r}")
    match = _WINDOW.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a window like \"Mon..Fri 08:30..18:00\", not {text!r}")
    start, end = _minutes(match["start"], text), _minutes(match["end"], text)
    if end <= start:
        raise ValueError(f"{text!r} ends before it starts: a window lies within one day "
                         "(give two windows to cross midnight)")
    days = _days(match["days"], text)
    day_names = ",".join(DAYS[day] for day in sorted(days))
    calendar = f"{day_names} {start // 60:02d}:{start % 60:02d}:00"
    return Window(text.strip(), days, start, end, calendar)


def current_window(windows: Sequence[Window], moment: time.struct_time) -> Window | None:
    return next((window for window in windows if window.contains(moment)), None)
