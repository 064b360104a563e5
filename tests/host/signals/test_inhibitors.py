"""logind's sleep inhibitors as the idle check reads them (host/signals/inhibitors.py)."""

from __future__ import annotations

import os

from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.inhibitors import InhibitorsSignal, blocking_sleep_inhibitors


def test_inhibitors() -> None:
    listed = [
        ("sleep", "make", "build", "block", 1000, 4242),
        ("sleep", "NetworkManager", "prepare for sleep", "delay", 0, 777),  # delay: ignored
        ("shutdown:idle", "gdm", "login screen", "block", 0, 555),  # not sleep
        ("sleep", "sleepyllama", "our own", "block", 0, os.getpid()),  # our own: ignored
    ]
    assert blocking_sleep_inhibitors(listed, os.getpid()) == ["make (build)"]
    reading = InhibitorsSignal(lambda: listed, os.getpid()).read()
    assert reading.activity is Activity.BUSY and "make (build)" in reading.reason

    def broken() -> list:
        raise OSError("no bus")

    assert InhibitorsSignal(broken, 1).read().activity is Activity.UNKNOWN
