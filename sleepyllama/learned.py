"""Pre-wakes learned from a proxy's ledger: when, by weekday and time of day, use of its box
begins, and when to wake the box so that it is ready then. Pure: handed the entries and the
time; the proxy (proxy/prewaker.py) acts on it, the page, Home Assistant and `sleepyllama
history` show it, and bench/prewake_replay.py replays traces through it.

A use begins with a wake that a client caused, or with the first client after QUIET while the
box was up (first-use, recorded by the proxy). Pre-wakes, the Wake button and scanners that were
refused (they caused no wake) teach nothing. A day is compared with its like days: the same
weekday in the last four weeks (WEEK_WEIGHTS: the older, the less they count) and the last
RECENT days of its kind (weekday or weekend, each counting fully, so that a change of habit is
followed within days). A half-hour in which use began on at least THRESHOLD of their weight, on
MIN_DAYS days or more, and on one of the last seven, is a habit; its pre-wake comes the box's
wake time and MARGIN (lead()) before the earliest start seen in it. A pre-wake that nobody
used counts against its half-hour as a day more without use.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sleepyllama import history, ledger, sleep_actions
from sleepyllama.windows import DAYS, Window

QUIET = 3600.0  # seconds without use after which the next use is a beginning
SPAN = 30.0  # minutes: starts this close together are one habit
STEP = 5.0  # minutes: where a half-hour may begin
THRESHOLD = 0.5  # of the like days' weight that saw use begin within the half-hour
WEEK_WEIGHTS = (0.5, 0.375, 0.25, 0.125)  # the same weekday one to four weeks back: a habit
# of weeks, outweighed by the last days when it changes
RECENT = 6  # the last days of the same kind that count, each fully
MIN_DAYS = 3  # use on one or two days is not a habit
MARGIN = 120.0  # seconds before the expected start, beyond the wake's own time
LEARNED = "learned"  # the ledger's "first" of a learned pre-wake: it teaches nothing
SHOWN_DAYS = 7  # how far ahead pre-wakes are planned and shown


@dataclass(frozen=True)
class Prewake:
    at: float  # Unix time the wake is to begin
    expected: float  # ... the use is expected to begin
    until: float  # ... the habit's half-hour ends: a box that sleeps before then is woken again
    share: float  # of the like days' weight on which use began then
    cause: str = ""  # "learned: weekdays about 08:25", for the journal, ledger and page
    never: str = ""  # the prewake_never window it falls in: not to be woken for


@dataclass
class Evidence:
    """What a ledger teaches, read once: each day's starts and unused pre-wakes, in minutes
    after local midnight."""
    first_day: date | None = None  # the ledger's first day: only the days after it are whole
    starts: dict[date, list[float]] = field(default_factory=lambda: defaultdict(list))
    unused: dict[date, list[float]] = field(default_factory=lambda: defaultdict(list))


def teaches(entry: ledger.Entry) -> bool:
    """A use of the box beginning: a first-use, or a wake a client caused."""
    if isinstance(entry, ledger.FirstUse):
        return True
    if not isinstance(entry, ledger.Wake) or entry.first == LEARNED:
        return False
    return entry.request != "Wake button" and not entry.request.endswith("(pre-wake)")


def began(entry: ledger.Entry) -> float:
    """When what an entry records began: a wake's entry is written when it ends."""
    return entry.at - (entry.took if isinstance(entry, ledger.Wake) else 0.0)


def use_starts(entries: Iterable[ledger.Entry]) -> list[float]:
    """The moments use began: the uses with QUIET or more before them. A wake and the
    first-use of its client a second later are one beginning."""
    starts, last = [], -math.inf
    for moment in sorted(began(entry) for entry in entries if teaches(entry)):
        if moment - last >= QUIET:
            starts.append(moment)
        last = moment
    return starts


def minute_of(moment: float) -> float:
    local = time.localtime(moment)
    return local.tm_hour * 60 + local.tm_min + local.tm_sec / 60


def moment_at(day: date, minute: float) -> float:
    """Unix time of a local time of day (mktime: right across a daylight saving change)."""
    seconds = round(minute * 60)
    return time.mktime((day.year, day.month, day.day, seconds // 3600, seconds % 3600 // 60,
                        seconds % 60, 0, 0, -1))


def evidence(entries: Sequence[ledger.Entry]) -> Evidence:
    found = Evidence()
    if not entries:
        return found
    found.first_day = date.fromtimestamp(entries[0].at)
    every_start = use_starts(entries)
    for moment in every_start:
        found.starts[date.fromtimestamp(moment)].append(minute_of(moment))
    for entry in entries:
        if isinstance(entry, ledger.Wake) and entry.first == LEARNED:
            woke = began(entry)
            expected = woke if entry.expected is None else entry.expected
            used = any(woke <= start <= expected + SPAN * 60 + QUIET for start in every_start)
            if not used:
                found.unused[date.fromtimestamp(expected)].append(minute_of(expected))
    return found


def weekend(day: date) -> bool:
    return day.weekday() >= 5


def like_days(day: date, today: date, first_day: date | None) -> dict[date, float]:
    """The days before today that tell of `day`, with how much each counts."""
    weights: dict[date, float] = defaultdict(float)
    candidates = [(day - timedelta(weeks=weeks), weight)
                  for weeks, weight in enumerate(WEEK_WEIGHTS, 1)]
    candidates += [(day - timedelta(days=back), 1.0) for back in range(1, RECENT + 1)
                   if weekend(day - timedelta(days=back)) == weekend(day)]
    for other, weight in candidates:
        if first_day is not None and first_day < other < today:
            weights[other] += weight
    return weights


def habits(found: Evidence, day: date, today: date) -> list[tuple[float, float]]:
    """(expected minute, share) of each habit of `day`, in the order of the day."""
    like = like_days(day, today, found.first_day)
    total = sum(like.values())
    recent = [other for other in like if (day - other).days <= 7]
    found_habits: list[tuple[float, float]] = []
    minute = 0.0
    while minute + SPAN <= 24 * 60:
        hit = {other: [start for start in found.starts.get(other, ())
                       if minute <= start < minute + SPAN] for other in like}
        hit = {other: starts for other, starts in hit.items() if starts}
        missed = sum(like[other] for other in like
                     if any(minute <= unused < minute + SPAN
                            for unused in found.unused.get(other, ())))
        share = sum(like[other] for other in hit) / (total + missed) if total else 0.0
        if (share >= THRESHOLD and len(hit) >= MIN_DAYS
                and any(other in hit for other in recent)):
            expected = min(start for starts in hit.values() for start in starts)
            found_habits.append((expected, share))
            # the next beginning comes after a quiet hour at the earliest
            minute = max(minute + STEP, expected + SPAN + QUIET / 60)
            continue
        minute += STEP
    return found_habits


def lead(entries: Sequence[ledger.Entry]) -> float:
    """Seconds a pre-wake comes before the expected use: what a wake from the way the box says
    it sleeps took here (the median of the last ones; before any, the action's usual time),
    and MARGIN."""
    said = [entry for entry in entries if isinstance(entry, ledger.BoxSleeping)]
    action = sleep_actions.get(said[-1].action if said else "")
    typical = history.typical_wake([entry for entry in entries if isinstance(entry, ledger.Wake)
                                    and entry.slept_as == action.name])
    return (typical[0] if typical else action.typical_wake) + MARGIN


def clock(minute: float) -> str:
    rounded = int(round(minute / 5) * 5) % (24 * 60)
    return f"{rounded // 60:02d}:{rounded % 60:02d}"


def day_names(days: Iterable[int]) -> str:
    """"weekdays", "weekends", "every day", "Mon..Wed", "Tue, Thu"."""
    chosen = sorted(set(days))
    named = {(0, 1, 2, 3, 4): "weekdays", (5, 6): "weekends", tuple(range(7)): "every day"}
    if tuple(chosen) in named:
        return named[tuple(chosen)]
    if len(chosen) > 2 and chosen == list(range(chosen[0], chosen[-1] + 1)):
        return f"{DAYS[chosen[0]]}..{DAYS[chosen[-1]]}"
    return ", ".join(DAYS[day] for day in chosen)


def plan(entries: Sequence[ledger.Entry], now: float, never: Sequence[Window] = (),
         days: int = SHOWN_DAYS) -> list[Prewake]:
    """The pre-wakes of today and the next days whose use is still to come, with the cause each
    gives: its weekdays and time, grouped as a person would say them."""
    found, ahead = evidence(entries), lead(entries)
    today = date.fromtimestamp(now)
    planned: list[tuple[date, float, float]] = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        planned += [(day, minute, share) for minute, share in habits(found, day, today)]
    groups: list[tuple[float, set[int]]] = []  # a time of day and the weekdays it is kept on
    for day, minute, _ in planned:
        group = next((group for group in groups if abs(group[0] - minute) <= SPAN / 2), None)
        if group is None:
            groups.append((minute, {day.weekday()}))
        else:
            group[1].add(day.weekday())
    prewakes = []
    for day, minute, share in planned:
        expected = moment_at(day, minute)
        until = expected + SPAN * 60
        if until <= now:
            continue
        group = next(group for group in groups if abs(group[0] - minute) <= SPAN / 2)
        at = expected - ahead
        window = next((window for window in never if window.contains(time.localtime(at))), None)
        prewakes.append(Prewake(at, expected, until, round(share, 2),
                                f"learned: {day_names(group[1])} about {clock(minute)}",
                                window.text if window else ""))
    return prewakes


def describe(prewakes: Sequence[Prewake]) -> list[str]:
    """The learned habits once each, as the causes say them: "weekdays about 08:25"."""
    seen: list[str] = []
    for prewake in prewakes:
        said = prewake.cause.removeprefix(f"{LEARNED}: ")
        if said not in seen:
            seen.append(said)
    return seen


def summary(name: str, on: bool, prewakes: Sequence[Prewake]) -> str:
    """For `sleepyllama history`: what was learned for a proxy, and the next pre-wake; while
    off, what turning them on would do."""
    habits, upcoming = describe(prewakes), next((p for p in prewakes if not p.never), None)
    if not habits:
        return (f"pre-wakes of {name}: nothing learned yet (a habit needs use at one time of "
                f"day on {MIN_DAYS} like days or more){'' if on else '; they are off'}")
    when = "" if upcoming is None else \
        f"; the next {time.strftime('%a %H:%M', time.localtime(upcoming.at))}"
    if on:
        return f"pre-wakes of {name}, learned: {'; '.join(habits)}{when}"
    return (f"pre-wakes of {name} are off; prewake = \"learned\" would wake the box for "
            f"{'; '.join(habits)}{when.replace('the next', 'the next would be')}")
