"""Awake windows on the GPU box (host/schedule.py): the timer that wakes it at each start, as
systemd reads its calendars (the idle check inside one: tests/host/signals/test_schedule.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from sleepyllama.host.schedule import timer_unit
from sleepyllama.windows import parse_window


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_reads_the_timer_s_calendars_as_meant() -> None:
    for text in ("Mon..Fri 08:30..18:00", "Sat,Sun 10:00..22:00", "06:15..07:00"):
        window = parse_window(text)
        shown = subprocess.run(["systemd-analyze", "calendar", window.calendar],
                               capture_output=True, text=True, check=True).stdout
        normalized = shown.split("Normalized form:")[1].splitlines()[0].strip()
        hours = f"{window.start // 60:02d}:{window.start % 60:02d}:00"
        assert normalized.endswith(hours) and "*-*-*" in normalized, normalized


def test_the_timer_wakes_the_box_at_each_window_s_start() -> None:
    unit = timer_unit([parse_window("Mon..Fri 08:30..18:00"), parse_window("Sat 10:00..12:00")])
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri 08:30:00\nOnCalendar=Sat 10:00:00\n" in unit
    assert "WakeSystem=yes\n" in unit and "Unit=sleepyllama-servers.target\n" in unit
