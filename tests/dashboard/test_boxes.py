"""Each box as the page reads it from a proxy's files: whatever is in them, never a crash."""

from __future__ import annotations

import base64
import itertools
import json
import math

import pytest

from sleepyllama import config, ledger, live_state
from sleepyllama.dashboard import boxes

PROXY = config.parse('[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                     ).proxy("llama")

LIVE = {"version": 1, "name": "llama", "backend": "10.0.0.5:8080", "listen": ["0.0.0.0:3939"],
        "pid": 1, "running": True, "state": "waking", "since": 1_800_000_000,
        "waking_since": 1_800_000_000, "signals": 3, "clients_waiting": 2, "typical_wake": 8.5,
        "asleep_as": "suspend", "last_ready": None}


def test_a_live_state_is_read_with_its_fields() -> None:
    box = boxes.box(PROXY, LIVE, [], None)
    assert (box.state, box.signals, box.clients_waiting, box.typical_wake) == ("waking", 3, 2, 8.5)
    assert box.hint_address == "0.0.0.0:3939" and box.running and not box.problem


@pytest.mark.parametrize("live", [
    {**LIVE, "version": 2}, {**LIVE, "state": "exploded"}, [], "x", 7,
])
def test_a_live_state_of_another_shape_reads_as_unknown_with_why(live: object) -> None:
    box = boxes.box(PROXY, live, [], None)
    assert box.state == "unknown" and box.problem


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 1e300, True, "9", None])
def test_numbers_out_of_range_are_dropped_not_shown(value: object) -> None:
    box = boxes.box(PROXY, {**LIVE, "since": value, "signals": value, "typical_wake": value,
                            "clients_waiting": value}, [], None)
    assert box.since is None and box.typical_wake is None
    assert box.signals == 0 and box.clients_waiting == 0
    json.dumps(box.as_json(), allow_nan=False)  # what /api/status sends is strict JSON


def test_the_ledger_gives_the_counts_and_the_last_wake(tmp_path) -> None:
    path = tmp_path / "llama.ledger.jsonl"
    ledger.append(path, ledger.Wake(first="10.0.0.2:5000", request="POST /v1/chat/completions",
                                    signals=2, ready_after=7.5))
    ledger.append(path, ledger.AnsweredAsleep(request="GET /v1/models", client="10.0.0.2:5001"))
    ledger.append(path, ledger.Wake(first="10.0.0.3:5000", request="GET /v1/models?api_key=SECRET",
                                    signals=60, gave_up_after=180.0))
    box = boxes.box(PROXY, LIVE, ledger.read(path), None)
    assert (box.wakes_total, box.give_ups_total, box.cache_answers_total) == (1, 1, 1)
    assert box.wake_seconds == [7.5]
    assert box.last_wake is not None and box.last_wake.cause == "10.0.0.3:5000 GET /v1/models"
    assert "gave up after 180.0s" in box.last_wake.outcome
    assert "SECRET" not in json.dumps(box.as_json())


def kept(body: object) -> dict:
    """An answer as the proxy keeps it (proxy/cache.py)."""
    return {"status": 200, "content_type": "application/json", "fetched_at": 1_800_000_000,
            "body": base64.b64encode(json.dumps(body).encode()).decode()}


def test_the_models_listed_while_asleep_come_from_the_kept_answers() -> None:
    answers = {"entries": {"/v1/models": kept({"object": "list", "data": [
        {"id": "qwen3-8b"}, {"id": "<b>x</b>"}, {"no": "id"}]})}}
    assert boxes.box(PROXY, LIVE, [], answers).models == ["qwen3-8b", "<b>x</b>"]
    ollama = {"entries": {"/api/tags": kept({"models": [{"name": "llama3"}]})}}
    assert boxes.models_of(ollama) == ["llama3"]
    for junk in ({"entries": {"/v1/models": {**kept({}), "body": "not base64!"}}},
                 {"entries": {"/v1/models": {**kept({}), "status": 500}}},
                 {"entries": {"/v1/models": kept("a string")}}, {"entries": []}, None, 5):
        assert boxes.models_of(junk) == []


def test_files_missing_torn_or_too_large_say_so(tmp_path) -> None:
    assert boxes.read_box(PROXY, tmp_path).problem == "its proxy has not written its state yet"
    (tmp_path / "llama.live.json").write_text('{"version": 1, "state": "aw')
    torn = boxes.read_box(PROXY, tmp_path)
    assert torn.state == "unknown" and "unreadable" in torn.problem
    (tmp_path / "llama.live.json").write_text(json.dumps(LIVE))
    (tmp_path / "llama.answers.json").write_text(" " * (boxes.MAX_FILE + 10))
    read = boxes.read_box(PROXY, tmp_path)
    assert read.state == "waking" and read.models == []


def test_the_box_s_sleeps_as_its_proxy_saw_them(tmp_path) -> None:
    """From a "sleeping" hint to the box seen up again (a wake's entry, at ready); said twice,
    one sleep; nothing since, asleep still."""
    path = tmp_path / "llama.ledger.jsonl"
    for entry in (ledger.BoxSleeping(action="suspend", at=1000.0),
                  ledger.BoxSleeping(action="suspend", at=1500.0),
                  ledger.Wake(first="10.0.0.2:5000", signals=2, ready_after=10.0, at=5000.0),
                  ledger.BoxSleeping(action="poweroff", at=9000.0)):
        ledger.append(path, entry)
    entries = ledger.read(path)
    found = boxes.sleeps(entries)
    assert [(sleep.start, sleep.end, sleep.kind) for sleep in found] == [
        (1000.0, 5000.0, "suspend"), (9000.0, None, "poweroff")]


def kwh_at(entries: list[ledger.Entry], now: float) -> float | None:
    return boxes.box(PROXY, LIVE, [e for e in entries if e.at <= now], None, now=now
                     ).kwh_saved_total


def test_the_kwh_saved_never_go_down_between_two_reads(tmp_path) -> None:
    """Found with a real Home Assistant: the total went down at every wake (its time was
    counted as sleep, then taken back), which state_class total records as negative energy."""
    path = tmp_path / "llama.ledger.jsonl"
    ledger.append(path, ledger.BoxSleeping(action="suspend", saving_watts=200, at=1_800_000_000.0))
    ledger.append(path, ledger.Wake(first="10.0.0.2:5000", signals=2, ready_after=30.0,
                                    at=1_800_003_600.0))
    entries = ledger.read(path)
    reads = [kwh_at(entries, 1_800_000_000.0 + seconds) for seconds in range(0, 7200, 10)]
    assert all(b >= a for a, b in itertools.pairwise(reads)), reads  # type: ignore[operator]
    assert reads[-1] == pytest.approx(0.2)  # an hour at 200 W


def test_a_box_seen_up_outside_a_wake_ends_its_sleep(tmp_path) -> None:
    """Found by trying it: after a refused hibernate the box stayed up, said "ready", and the
    page counted 200 W saved until the next wake; a spoofed "sleeping" did the same."""
    path = tmp_path / "llama.ledger.jsonl"
    ledger.append(path, ledger.BoxSleeping(action="hibernate", saving_watts=200,
                                           at=1_800_000_000.0))
    ledger.append(path, ledger.BoxUp(at=1_800_000_060.0))
    entries = ledger.read(path)
    assert kwh_at(entries, 1_800_000_000.0 + 86400) == pytest.approx(200 * 60 / 3600 / 1000)


def test_the_last_seven_days_are_drawn_from_the_ledger(tmp_path) -> None:
    now = 1_800_000_000.0
    path = tmp_path / "llama.ledger.jsonl"
    # asleep a whole day
    ledger.append(path, ledger.BoxSleeping(action="suspend", at=now - 86400 * 2))
    ledger.append(path, ledger.Wake(first="10.0.0.2:5000", signals=1, ready_after=5.0,
                                    at=now - 86400))
    entries = ledger.read(path)
    days = boxes.box(PROXY, LIVE, entries, None, now=now).days
    assert len(days) == boxes.DAYS
    assert 23.5 <= sum(day.asleep_hours for day in days) <= 24.5
    assert sum(day.wakes for day in days) == 1
    assert boxes.box(PROXY, LIVE, [], None, now=now).days == []  # nothing known: no picture


def test_the_kwh_saved_are_the_box_s_own_figure_times_how_long_it_slept(tmp_path) -> None:
    """The box says what a sleep saves each hour (its "sleeping" hint); the always-on host
    counts the hours. A sleep of a box that did not say saves nothing known."""
    now = 1_800_000_000.0
    path = tmp_path / "llama.ledger.jsonl"
    ledger.append(path, ledger.BoxSleeping(action="suspend", saving_watts=200, at=now - 36000))
    ledger.append(path, ledger.Wake(first="10.0.0.2:5000", signals=1, ready_after=0.0,
                                    at=now - 36000 + 5 * 3600))
    ledger.append(path, ledger.BoxSleeping(action="suspend", at=now - 7200))
    ledger.append(path, ledger.Wake(first="10.0.0.2:5000", signals=1, ready_after=0.0,
                                    at=now - 3600))
    entries = ledger.read(path)
    found = boxes.box(PROXY, LIVE, entries, None, now=now)
    assert found.kwh_saved == pytest.approx(1.0)  # 5 h at 200 W; the hour after is not known
    assert found.kwh_saved_total == pytest.approx(1.0)
    quiet = [entry for entry in entries if getattr(entry, "saving_watts", None) is None]
    assert boxes.box(PROXY, LIVE, quiet, None, now=now).kwh_saved is None


def test_the_time_asleep_comes_from_the_sleeps_the_box_told_of(tmp_path) -> None:
    path = tmp_path / "llama.ledger.jsonl"
    ledger.append(path, ledger.BoxSleeping(action="suspend", saving_watts=200, at=1_800_000_000.0))
    ledger.append(path, ledger.BoxUp(at=1_800_005_400.0))
    entries = ledger.read(path)
    assert boxes.box(PROXY, LIVE, entries, None, now=1_800_009_000.0).asleep_seconds_total == 5400


def test_how_the_box_sleeps_is_read_from_the_live_state_and_checked() -> None:
    for said, read in (("poweroff", "poweroff"), ("reboot", ""), (7, "")):
        assert boxes.checked_live({**LIVE, "asleep_as": said})[0]["asleep_as"] == read


def test_learned_pre_wakes_are_read_from_the_live_state_and_checked() -> None:
    prewake = {"mode": "learned", "next": 1_800_003_000, "cause": "learned: weekdays about 08:25",
               "learned": ["weekdays about 08:25", "Sat about 10:00"]}
    box = boxes.box(PROXY, {**LIVE, "prewake": prewake}, [], None)
    assert (box.prewake, box.next_prewake, box.next_prewake_cause, box.learned) == (
        "learned", 1_800_003_000, "learned: weekdays about 08:25",
        ["weekdays about 08:25", "Sat about 10:00"])
    garbled = boxes.box(PROXY, {**LIVE, "prewake": {"mode": "always", "next": math.nan,
                                                    "cause": 7, "learned": ["x" * 500, 3] * 20}},
                        [], None)
    assert (garbled.prewake, garbled.next_prewake, garbled.next_prewake_cause) == ("off", None, "")
    # the first MAX_LEARNED items, the texts among them, each cut to MAX_WORDS
    assert garbled.learned == ["x" * live_state.MAX_WORDS] * (live_state.MAX_LEARNED // 2)
    older = boxes.box(PROXY, LIVE, [], None)  # a proxy of an earlier version says nothing
    assert (older.prewake, older.next_prewake, older.learned) == ("off", None, [])
