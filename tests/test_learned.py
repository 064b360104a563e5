"""Learned pre-wakes, the pure part (sleepyllama/learned.py): ledgers written here, on a clock
the test sets."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from sleepyllama import learned, ledger
from sleepyllama.windows import parse_window

MONDAY = date(2026, 3, 2)


pytestmark = pytest.mark.usefixtures("utc")  # weekdays and times of day: UTC's


def at(day: date, clock: str) -> float:
    hours, minutes = clock.split(":")
    return learned.moment_at(day, int(hours) * 60 + int(minutes))


def client_wake(day: date, clock: str, took: float = 20.0, **fields: object) -> ledger.Wake:
    """A wake a client caused at `clock`, as the proxy writes it when the box is ready."""
    return ledger.Wake(**{"at": at(day, clock) + took, "first": "192.168.1.20:50123",
                          "request": "POST /v1/chat/completions", "woke_from": "suspend",
                          "signals": 2, "ready_after": took, **fields})


def weekday_mornings(weeks: int, clock: str = "08:30", **fields: object) -> list[ledger.Entry]:
    """`weeks` weeks of weekday wakes at `clock`, from the Monday `weeks` weeks before MONDAY;
    a line the day before says the ledger began then."""
    first = MONDAY - timedelta(weeks=weeks)
    entries = [ledger.BoxSleeping(at=at(first - timedelta(days=1), "23:00"), action="suspend")]
    for offset in range(weeks * 7):
        day = first + timedelta(days=offset)
        if day.weekday() < 5:
            entries.append(client_wake(day, clock, **fields))
    return entries


def test_weekday_mornings_teach_a_pre_wake_ahead_of_the_first_request() -> None:
    entries = weekday_mornings(3)
    plan = learned.plan(entries, at(MONDAY, "00:00"))
    monday = [prewake for prewake in plan if date.fromtimestamp(prewake.at) == MONDAY]
    assert len(monday) == 1, plan
    prewake = monday[0]
    assert prewake.expected == at(MONDAY, "08:30")
    # the wake's time here (20 s, the median) and the margin before it
    assert prewake.at == prewake.expected - 20.0 - learned.MARGIN
    assert prewake.cause == "learned: weekdays about 08:30"
    saturday = MONDAY + timedelta(days=5)
    assert not [p for p in plan if date.fromtimestamp(p.at) in (saturday, saturday + timedelta(1))]


def test_a_use_whose_time_has_passed_is_not_planned_but_one_still_under_way_is() -> None:
    entries = weekday_mornings(3)
    assert [p for p in learned.plan(entries, at(MONDAY, "08:40"))
            if date.fromtimestamp(p.at) == MONDAY], "within its half-hour: still due"
    assert not [p for p in learned.plan(entries, at(MONDAY, "09:01"))
                if date.fromtimestamp(p.at) == MONDAY]


@pytest.mark.parametrize("fields", [
    {"first": learned.LEARNED, "request": "learned pre-wake", "cause": "learned: weekdays"},
    {"first": "the page", "request": "Wake button"},
    {"first": "192.168.1.20:50123", "request": "GET /api/models (pre-wake)"},
], ids=["learned pre-wakes", "the Wake button", "prewake_on"])
def test_pre_wakes_and_presses_teach_nothing(fields: dict) -> None:
    entries = weekday_mornings(3, **fields)
    assert learned.plan(entries, at(MONDAY, "00:00")) == []


def test_requests_answered_from_the_cache_teach_nothing() -> None:
    """A scanner refused by wake_on, or a frontend's look at the model list, wakes nothing:
    only its answer from the cache is in the ledger."""
    entries = [ledger.AnsweredAsleep(at=at(MONDAY - timedelta(days=back), "08:30"),
                                     request="GET /v1/models", client="10.0.0.9:4000")
               for back in range(21, 0, -1)]
    assert learned.plan(entries, at(MONDAY, "00:00")) == []


def test_first_uses_of_a_box_that_was_up_teach_too() -> None:
    """A box kept up (a [schedule] window, a pre-wake) is never woken by its user: the first
    client after a quiet hour is where the use began."""
    began, *wakes = weekday_mornings(3)
    entries = [began] + [ledger.FirstUse(at=wake.at - wake.ready_after, client=wake.first)
                         for wake in wakes]
    plan = learned.plan(entries, at(MONDAY, "00:00"))
    assert [p.expected for p in plan if date.fromtimestamp(p.at) == MONDAY] == [at(MONDAY, "08:30")]


def test_a_wake_and_its_clients_first_use_are_one_beginning() -> None:
    wake = client_wake(MONDAY, "08:30")
    first_use = ledger.FirstUse(at=wake.at + 0.2)
    later = ledger.FirstUse(at=at(MONDAY, "13:00"))
    assert learned.use_starts([wake, first_use, later]) == [at(MONDAY, "08:30"), later.at]


def unused_prewake(day: date, clock: str = "08:30") -> ledger.Wake:
    expected = at(day, clock)
    return ledger.Wake(at=expected - 120, first=learned.LEARNED, request="learned pre-wake",
                       cause="learned: weekdays about 08:30", expected=expected, ready_after=20.0,
                       signals=1)


def test_an_unused_pre_wake_weakens_its_half_hour() -> None:
    """The Friday the user stayed home: the box was pre-woken, nobody came."""
    entries = weekday_mornings(3)
    friday = MONDAY - timedelta(days=3)
    entries = [entry for entry in entries if date.fromtimestamp(entry.at) != friday]
    before = learned.plan(entries, at(MONDAY, "00:00"))[0].share
    weakened = learned.plan(sorted([*entries, unused_prewake(friday)], key=lambda e: e.at),
                            at(MONDAY, "00:00"))[0].share
    assert weakened < before


def test_a_used_pre_wake_does_not_weaken_it() -> None:
    entries = weekday_mornings(3)
    friday = MONDAY - timedelta(days=3)
    with_prewake = sorted([*entries, unused_prewake(friday, "08:28")], key=lambda e: e.at)
    assert (learned.plan(with_prewake, at(MONDAY, "00:00"))[0].share
            == learned.plan(entries, at(MONDAY, "00:00"))[0].share)


def test_a_habit_that_stops_is_dropped_within_a_week() -> None:
    """Four weeks of mornings, then a holiday: each morning pre-woken, nobody came."""
    entries = weekday_mornings(4)
    holiday = [MONDAY + timedelta(days=offset) for offset in range(5)]
    for day in holiday:
        plan = learned.plan(entries, at(day, "00:00"))
        if not any(date.fromtimestamp(p.at) == day for p in plan):
            break
        entries.append(unused_prewake(day))
    else:
        pytest.fail("still pre-woken every day of the holiday week")
    next_monday = MONDAY + timedelta(weeks=1)
    assert not [p for p in learned.plan(entries, at(next_monday, "00:00"))
                if date.fromtimestamp(p.at) == next_monday]


def test_a_new_habit_is_followed_within_days() -> None:
    """Mornings for three weeks, then evenings."""
    entries = weekday_mornings(3)
    followed = None
    for offset in range(7):
        day = MONDAY + timedelta(days=offset)
        plan = learned.plan(entries, at(day, "00:00"))
        if any(date.fromtimestamp(p.expected) == day and p.expected >= at(day, "19:00")
               for p in plan):
            followed = offset
            break
        if day.weekday() < 5:
            entries.append(client_wake(day, "19:30"))
    assert followed is not None and followed <= 4, followed


def test_one_day_of_use_is_not_a_habit() -> None:
    entries = [client_wake(MONDAY - timedelta(days=2), "08:30"),
               client_wake(MONDAY - timedelta(days=1), "08:30")]
    assert learned.plan(entries, at(MONDAY, "00:00")) == []


def test_the_lead_is_the_wake_time_learned_for_how_the_box_sleeps() -> None:
    entries = weekday_mornings(3)
    assert learned.lead(entries) == 20.0 + learned.MARGIN
    # the box powers off now: a resume from suspend says nothing of a cold boot
    powered_off = [*entries, ledger.BoxSleeping(at=entries[-1].at + 60, action="poweroff")]
    assert learned.lead(powered_off) == 120.0 + learned.MARGIN


def test_a_prewake_never_window_is_named_on_the_pre_wakes_it_holds() -> None:
    plan = learned.plan(weekday_mornings(3), at(MONDAY, "00:00"),
                        never=(parse_window("Mon 00:00..09:00"),))
    assert [p.never for p in plan][:2] == ["Mon 00:00..09:00", ""]


def test_the_causes_say_the_days_as_a_person_would() -> None:
    assert learned.day_names(range(5)) == "weekdays"
    assert learned.day_names([5, 6]) == "weekends"
    assert learned.day_names(range(7)) == "every day"
    assert learned.day_names([1, 3]) == "Tue, Thu"
    assert learned.day_names([0, 1, 2]) == "Mon..Wed"


def test_old_ledger_lines_are_read_and_new_fields_checked(tmp_path) -> None:
    """A ledger written before learned pre-wakes (no "from", no cause) teaches; a line whose
    expected time is not a time is skipped as any garbled line is."""
    path = tmp_path / "t.ledger.jsonl"
    lines = [f'{{"at":{at(MONDAY - timedelta(days=back), "07:45") + 12},"mono":1,"boot":"b",'
             '"event":"wake","first":"10.0.0.2:5000","request":"POST /v1/chat/completions",'
             '"signals":1,"ready_after":12.0}'
             for back in range(14, 0, -1) if (MONDAY - timedelta(days=back)).weekday() < 5]
    lines.insert(0, f'{{"at":{at(MONDAY - timedelta(days=15), "12:00")},"mono":1,"boot":"b",'
                 '"event":"box-up"}')
    lines.append(f'{{"at":{at(MONDAY - timedelta(days=1), "08:00")},"mono":1,"boot":"b",'
                 '"event":"wake","first":"learned","expected":NaN,"signals":1}')
    path.write_text("\n".join(lines) + "\n")
    entries = ledger.read(path)
    assert len(entries) == len(lines) - 1
    plan = learned.plan(entries, at(MONDAY, "00:00"))
    assert plan and plan[0].expected == at(MONDAY, "07:45")
    assert plan[0].at == plan[0].expected - 12.0 - learned.MARGIN


def test_local_time_is_kept_across_a_daylight_saving_change(monkeypatch) -> None:
    """08:30 in Berlin is 07:30 UTC in winter and 06:30 in summer: the habit is of the clock
    on the wall."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    summer = date(2026, 3, 30)  # the Monday after the change (Sunday 29 March)
    entries = [ledger.BoxUp(at=at(summer - timedelta(days=22), "12:00"))]
    entries += [client_wake(summer - timedelta(days=back), "08:30")
                for back in range(21, 0, -1) if (summer - timedelta(days=back)).weekday() < 5]
    plan = learned.plan(entries, at(summer, "00:00"))
    assert time.strftime("%H:%M", time.localtime(plan[0].expected)) == "08:30"
