"""The ledger's own promises: one record per event, read back as written (older lines too),
who may read it, and which entries end a sleep."""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest

from sleepyllama import ledger


def test_a_new_ledger_is_readable_by_the_page_whatever_the_unit_s_umask(tmp_path) -> None:
    """Found by trying it: the idle unit's UMask=0077 made the box's ledger 0600, and its own
    page said "its ledger is unreadable" and never showed its week."""
    path = tmp_path / "ledger.jsonl"
    old = os.umask(0o077)
    try:
        ledger.append(path, ledger.BoxSleeping(action="suspend"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o600)  # a user's own choice afterwards is kept
    ledger.append(path, ledger.BoxUp())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_what_ends_a_sleep() -> None:
    assert ledger.ends_a_sleep(ledger.BoxUp())
    assert ledger.ends_a_sleep(ledger.Wake(ready_after=9.0))
    assert not ledger.ends_a_sleep(ledger.Wake(gave_up_after=180.0))
    assert not ledger.ends_a_sleep(ledger.BoxSleeping())


def test_every_record_is_read_back_as_it_was_written(tmp_path, caplog) -> None:
    """One record per event, written and read by ledger.py: each field round-trips, "from"
    (a Python keyword) included; nothing is said of a good file."""
    path = tmp_path / "ledger.jsonl"
    written = [
        ledger.Sleep(reason="idle for 10m", action="suspend"), ledger.Suspend(kind="hibernate"),
        ledger.Resume(kind="hibernate"), ledger.ServerReady(name="llama", load_seconds=8.3),
        ledger.ServerDegraded(name="llama", problem="on the CPU"),
        ledger.GpuHealed(error="999"), ledger.GpuFailed(error="999", held_by=("ollama (pid 3)",)),
        ledger.GpuReboot(),
        ledger.Wake(first="10.0.0.2:5000", request="POST /v1/chat/completions", agent="curl/8",
                    signals=3, ready_after=12.4, up_after=5.0, served_after=9.0,
                    woke_from="poweroff", cause="learned: weekdays about 08:30",
                    expected=1_800_000_000.0),
        ledger.BoxUp(), ledger.BoxSleeping(action="suspend", saving_watts=183),
        ledger.AnsweredAsleep(request="GET /v1/models", client="10.0.0.2:5001"),
        ledger.FirstAnswer(after_ready=1.5), ledger.FirstUse(client="10.0.0.2:5000")]
    assert {type(entry) for entry in written} == set(ledger.RECORDS.values())
    for entry in written:
        ledger.append(path, entry)
    read = ledger.read(path)
    assert [dataclasses.replace(entry, at=0.0, mono=0.0, boot="") for entry in read] == written
    assert all(entry.at > 1e9 and entry.boot for entry in read)
    assert '"from":"poweroff"' in path.read_text() and "woke_from" not in path.read_text()
    assert not caplog.records


def test_an_older_line_reads_with_defaults_and_a_newer_event_is_passed_over(tmp_path, caplog) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"at": 1795600000, "event": "wake", "first": "10.0.0.2:5000", '
                    '"ready_after": 12}\n'  # before signals, from, up_after were written
                    '{"at": 1795600001, "event": "box-dreaming", "depth": 3}\n'  # a newer version
                    '{"at": 1795600002, "event": "wake", "signals": -1}\n')  # out of range
    assert ledger.read(path) == [ledger.Wake(at=1795600000, first="10.0.0.2:5000", ready_after=12)]
    assert [record.getMessage() for record in caplog.records] == [
        f"{path} line 3 is torn, garbled or out of range: skipped"]


def test_a_field_of_the_wrong_kind_is_named() -> None:
    with pytest.raises(ValueError, match="held_by"):
        ledger.parse({"at": 1795600000, "event": "gpu-failed", "held_by": "ollama"})
    with pytest.raises(ValueError, match="server-ready without load_seconds"):
        ledger.parse({"at": 1795600000, "event": "server-ready", "name": "llama"})
