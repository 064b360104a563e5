"""Awake windows: [schedule] awake = ["Mon..Fri 08:30..18:00"].

Inside a window the idle check stays awake and says why; at each window's start
sleepyllama-wake.timer (WakeSystem=yes, generated from the config) resumes the box from suspend
through the RTC and starts the servers, so the model is loaded before anyone asks.

A window is systemd calendar syntax for the days (Mon..Fri, Sat,Sun, Mon,Wed..Fri; none: every
day) and a start and end time on one day. Parsing and the "am I inside one?" question are pure.

  python -m sleepyllama.host.schedule install [--config PATH]   (install.sh, sleepyllama restart)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TIMER = Path("/etc/systemd/system/sleepyllama-wake.timer")
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


def timer_unit(windows: Sequence[Window]) -> str:
    calendars = "".join(f"OnCalendar={window.calendar}\n" for window in windows)
    return ("# written by sleepyllama from [schedule] awake in /etc/sleepyllama/sleepyllama.toml\n"
            "[Unit]\nDescription=sleepyllama: wake the box for its awake windows\n"
            "Documentation=https://github.com/sleepyllama/sleepyllama#schedules\n\n"
            "[Timer]\n" + calendars +
            "# resume a suspended box through the RTC alarm, and load the models for the window\n"
            "WakeSystem=yes\nUnit=sleepyllama-servers.target\nAccuracySec=1s\n\n"
            "[Install]\nWantedBy=timers.target\n")


def install(windows: Sequence[Window], path: Path = TIMER) -> str:
    """Write (or remove) the wake timer and tell systemd; "written", "removed" or "unchanged"."""
    wanted = timer_unit(windows) if windows else None
    present = path.read_text() if path.exists() else None
    if wanted == present:
        return "unchanged"
    if wanted is None:
        subprocess.run(["systemctl", "disable", "--now", path.name], capture_output=True, check=False)
        path.unlink()
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        return "removed"
    path.write_text(wanted)
    path.chmod(0o644)
    subprocess.run(["systemctl", "daemon-reload"], check=False)
    subprocess.run(["systemctl", "enable", "--now", "--quiet", path.name], check=False)
    subprocess.run(["systemctl", "restart", path.name], check=False)  # new OnCalendar= lines
    return "written"


def main(argv: list[str] | None = None) -> int:
    from sleepyllama import config as configuration

    parser = argparse.ArgumentParser(prog="python -m sleepyllama.host.schedule",
                                     description="Write sleepyllama-wake.timer from [schedule].")
    parser.add_argument("action", choices=["install"])
    parser.add_argument("--config", type=Path, default=configuration.DEFAULT_PATH)
    args = parser.parse_args(argv)
    try:
        loaded = configuration.load(args.config)
    except configuration.ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return configuration.EX_CONFIG
    print(install(loaded.schedule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
