"""The GPU box on its own page: what its last idle check saw and its own ledger, every field
read back checked (dashboard/own_box.py)."""

from __future__ import annotations

import json

from sleepyllama import config, ledger
from sleepyllama.dashboard import own_box
from sleepyllama.dashboard.page import render

NOW = 1_800_000_000.0
BOX = config.parse('[server.llama]\ncommand = ["/bin/true"]\n[energy]\nbase_watts = 50\n')
RECORD = {"boot_id": "b", "idle_since": NOW - 240, "checked_at": NOW - 12, "verdict": "stay awake",
          "reason": "idle for 4m, sleeping in 6m", "idle_for": 240.0, "sleep_in": 360.0,
          "idle_watts": {"watts": 130.0, "samples": 9},
          "readings": [{"signal": "llama", "activity": "idle", "reason": "no request for 4m"},
                       {"signal": "sessions", "activity": "busy", "reason": "alice on tty2"}]}


def test_the_box_shows_its_last_check_its_days_and_what_its_sleeps_saved(tmp_path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, ledger.Sleep(reason="idle for 10m", at=NOW - 7300))
    ledger.append(path, ledger.Suspend(kind="suspend", at=NOW - 7200))
    ledger.append(path, ledger.Resume(at=NOW - 3600))
    entries = ledger.read(path)
    box = own_box.own_box(BOX, "gpu", RECORD, entries, NOW)
    assert (box.verdict, box.idle_for, box.sleep_in) == ("stay awake", 240.0, 360.0)
    assert [(r.signal, r.activity) for r in box.readings] == [("llama", "idle"),
                                                              ("sessions", "busy")]
    assert len(box.days) == own_box.DAYS
    assert 0.99 <= sum(day.asleep_hours for day in box.days) <= 1.01
    assert abs(box.kwh_saved - 0.178) < 0.001  # an hour at 130 + 50 W less 2 W asleep
    html = render([], {}, NOW, own=box)
    assert "gpu (this box)" in html and "idle for 4m, sleeping in 6m" in html
    assert "busy: alice on tty2" in html and "0.18 kWh saved" in html
    assert 'name="box"' not in html and "steering secret" in html  # no secret: no buttons
    assert 'action="/stay-awake"' in render([], {}, NOW, steering=True, own=box)


def test_an_idle_state_of_the_wrong_shape_is_said_never_a_crash(tmp_path) -> None:
    for record in (None, [], {"verdict": 3, "idle_for": float("nan"), "checked_at": 1e18,
                              "readings": [{"signal": None}, "x", {"signal": "s" * 999}]}):
        box = own_box.own_box(BOX, "gpu", record, [], NOW)
        assert box.verdict == "" and box.idle_for is None and box.checked_at is None
        assert all(len(reading.signal) <= own_box.MAX_TEXT for reading in box.readings)
    assert "no idle check has run yet" in own_box.own_box(BOX, "gpu", None, [], NOW).problem
    (tmp_path / "idle.json").write_text("{torn")
    assert "unreadable" in own_box.read_own_box(BOX, tmp_path).problem
    (tmp_path / "idle.json").write_text(json.dumps(RECORD))
    read = own_box.read_own_box(BOX, tmp_path)
    assert read.problem == "" and read.reason == RECORD["reason"]
