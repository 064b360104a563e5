"""After a sleep (host/hook.py): a power-off, which runs no systemd-sleep hook, is recorded by the
sleep sequence and its wake is the next boot."""

from __future__ import annotations

from pathlib import Path

from sleepyllama import config, ledger
from sleepyllama.host.idle import Action
from sleepyllama.host.idle_check import check

from host.stand_ins import QUIET_TEXT, Recorder, checks_every_30s


def test_a_power_off_is_recorded_and_its_wake_is_the_next_boot(tmp_path: Path, monkeypatch) -> None:
    from sleepyllama import history
    from sleepyllama.host import hook

    path = tmp_path / "idle.json"
    poweroff = config.parse(QUIET_TEXT + 'action = "poweroff"\n')
    recorder = Recorder()
    assert checks_every_30s(poweroff, path, 100.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["arm", "stop", "poweroff"]
    entries = ledger.read(tmp_path / "ledger.jsonl")
    assert [(e.event, getattr(e, "action", getattr(e, "kind", None))) for e in entries] == [
        ("sleep", "poweroff"), ("suspend", "poweroff")]  # no systemd-sleep hook records it
    # the next boot: its first idle check records the boot as the wake, at the kernel's btime
    booted = ledger.read(tmp_path / "ledger.jsonl")[-1].at + 60
    monkeypatch.setattr(hook, "boot_time", lambda: booted)
    check(poweroff, path, dry_run=False, ops=recorder.ops(), boot_id="boot-2", now=10.0)
    entries = ledger.read(tmp_path / "ledger.jsonl")
    assert entries[-1].event == "resume" and entries[-1].kind == "poweroff"
    assert entries[-1].at == booted
    assert [sleep.end for sleep in history.sleeps(entries)] == [booted]
    # once only, and never for a boot that follows a suspend
    check(poweroff, path, dry_run=False, ops=recorder.ops(), boot_id="boot-3", now=10.0)
    assert len(ledger.read(tmp_path / "ledger.jsonl")) == 3
    assert "booted" in history.wakes(ledger.read(tmp_path / "ledger.jsonl"))[-1].what
