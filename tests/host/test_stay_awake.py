"""`sleepyllama stay-awake` (host/stay_awake.py): one real logind inhibitor at a time, held by
systemd-inhibit in a transient unit; systemd's side stood in for, the command it is given
checked word by word."""

from __future__ import annotations

import subprocess

import pytest

from sleepyllama import systemd
from sleepyllama.host import stay_awake


class Systemd:
    """systemctl and systemd-run as stay_awake.py calls them, recorded; run answers `answer`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answer = subprocess.CompletedProcess([], 0, "", "")
        monkeypatch.setattr(systemd, "systemctl", self.systemctl)
        monkeypatch.setattr(systemd, "run_transient", self.run_transient)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(("systemctl", *args))
        return subprocess.CompletedProcess(args, 0, "", "")

    def run_transient(self, unit: str, description: str, command: list[str]
                      ) -> subprocess.CompletedProcess[str]:
        self.calls.append(("run", unit, description, *command))
        return self.answer


def test_a_new_duration_replaces_the_one_held(monkeypatch: pytest.MonkeyPatch) -> None:
    box = Systemd(monkeypatch)
    held, said = stay_awake.start(2 * 3600)
    assert held and said.startswith("staying awake until ") and said.endswith("(2h)")
    stop, run = box.calls
    assert stop == ("systemctl", "stop", stay_awake.UNIT)  # the one held before goes first
    assert run[1] == stay_awake.UNIT
    command = run[3:]
    assert command[:4] == ("systemd-inhibit", "--what=sleep", "--mode=block", "--who=sleepyllama")
    assert command[4].startswith("--why=stay-awake until ")
    assert command[5:] == ("sleep", "7200")


def test_a_refused_unit_is_said_as_systemd_said_it(monkeypatch: pytest.MonkeyPatch) -> None:
    box = Systemd(monkeypatch)
    box.answer = subprocess.CompletedProcess([], 1, "", "Failed to start transient service\n")
    assert stay_awake.start(60) == (False, "Failed to start transient service")


def test_cancel_stops_the_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    box = Systemd(monkeypatch)
    assert "cancelled" in stay_awake.cancel()
    assert box.calls == [("systemctl", "stop", stay_awake.UNIT)]
