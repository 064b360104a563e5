#!/usr/bin/env python3
"""Replay traces of use through the learned pre-wakes (sleepyllama/learned.py), without waiting
in real time, and print what they bring and cost against no pre-wakes.

The box of the replay sleeps after `--idle` seconds without a request and takes `--wake`
seconds from asleep to ready. Each request either finds it ready, waits for the rest of a wake
under way, or wakes it. The ledger is written as the proxy writes it (a wake with its client,
a first-use after an hour of quiet, box-sleeping, a learned pre-wake with its expected start),
and each day's pre-wakes are planned by learned.plan() from the ledger so far, as the proxy
plans them. A pre-wake that finds the box up waits, until the end of its half-hour, in case the box
sleeps meanwhile, as the proxy does.

For each trace: the share of first uses (a request after at least --idle of quiet) that found
the box ready, the seconds of waiting saved, and the extra awake hours and kWh (--watts: what
the box draws awake and idle more than asleep) against a replay without pre-wakes.

  bench/prewake_replay.py                 the built-in traces, over --seeds seeds
  bench/prewake_replay.py --trace FILE    a trace of your own: one request per line, as epoch
                                          seconds or ISO 8601 local time ("2026-03-02T08:31")
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sleepyllama import learned, ledger

START = date(2026, 1, 5)  # a Monday
WEEKS = 10


@dataclass
class Outcome:
    first_uses: int = 0
    ready: int = 0
    waited: float = 0.0  # seconds the first uses waited
    awake: float = 0.0  # seconds the box was up
    prewakes: int = 0
    unused: int = 0  # pre-wakes after which nobody came before the box slept again


def replay(requests: Sequence[float], idle: float, wake: float, prewakes: bool) -> tuple[
        Outcome, list[tuple[float, bool]]]:
    """The outcome, and (time, ready) of each first use."""
    entries: list[ledger.Entry] = []
    outcome = Outcome()
    firsts: list[tuple[float, bool]] = []
    up_from: float | None = None  # the box is up (or waking) since then
    ready_at = asleep_at = -1.0
    last_request = -1e18
    used_since_prewake = True

    def record(event: str, at: float, **fields: object) -> None:
        entries.append(ledger.RECORDS[event](at=at, **fields))  # type: ignore[arg-type]

    def sleep_until(moment: float) -> None:
        """The box goes to sleep at asleep_at if that comes before `moment`."""
        nonlocal up_from, used_since_prewake
        if up_from is not None and asleep_at <= moment:
            outcome.awake += asleep_at - up_from
            record("box-sleeping", asleep_at, action="suspend")
            up_from = None
            if not used_since_prewake:
                outcome.unused += 1
            used_since_prewake = True

    def wake_up(at: float, **fields: object) -> None:
        nonlocal up_from, ready_at, asleep_at
        up_from, ready_at, asleep_at = at, at + wake, at + wake + idle
        record("wake", at + wake, ready_after=wake, signals=1, **fields)

    days = sorted({date.fromtimestamp(moment) for moment in requests})
    if not days:
        return outcome, firsts
    index = 0
    day = days[0]
    while day <= days[-1]:
        midnight = learned.moment_at(day, 0)
        tomorrow = learned.moment_at(day + timedelta(days=1), 0)
        sleep_until(midnight)
        plan = learned.plan(entries, midnight, days=1) if prewakes else []
        plan = [prewake for prewake in plan if prewake.at < tomorrow]
        while True:
            request = requests[index] if index < len(requests) and requests[index] < tomorrow \
                else None
            prewake = plan[0] if plan else None
            if prewake is not None and (request is None or prewake.at <= request):
                plan.pop(0)
                sleep_until(prewake.at)
                if up_from is not None:
                    # up at its time: it waits until the expected start for the box to sleep
                    if asleep_at < prewake.until:
                        plan.append(replace(prewake, at=asleep_at))
                        plan.sort(key=lambda later: later.at)
                    continue
                outcome.prewakes += 1
                used_since_prewake = False
                wake_up(prewake.at, first=learned.LEARNED, request="learned pre-wake",
                        cause=prewake.cause, expected=prewake.expected)
                continue
            if request is None:
                break
            index += 1
            sleep_until(request)
            first_use = request - last_request >= idle
            if up_from is None:
                wake_up(request, first="client", request="POST /v1/chat/completions")
            waited = max(0.0, ready_at - request)
            if request - last_request >= learned.QUIET and waited == 0:
                record("first-use", request)
            if first_use:
                outcome.first_uses += 1
                outcome.ready += waited == 0
                outcome.waited += waited
                firsts.append((request, waited == 0))
            used_since_prewake = True
            last_request = request
            asleep_at = max(asleep_at, request + waited + idle)
        day += timedelta(days=1)
    sleep_until(1e18)
    return outcome, firsts


# -- traces -------------------------------------------------------------------------------------

def session(rng: random.Random, day: date, start: float, end: float) -> list[float]:
    """Requests every 1 to 6 minutes from `start` to `end` (minutes after midnight)."""
    found, minute = [], start
    while minute < end:
        found.append(learned.moment_at(day, minute))
        minute += rng.uniform(1, 6)
    return found


def each_day(weeks: int = WEEKS) -> list[date]:
    return [START + timedelta(days=offset) for offset in range(weeks * 7)]


def office(rng: random.Random, days: Sequence[date] | None = None, holiday: int | None = None
           ) -> list[float]:
    found: list[float] = []
    for day in days or each_day():
        if day.weekday() >= 5 or (holiday is not None and (day - START).days // 7 == holiday):
            continue
        found += session(rng, day, 8 * 60 + 30 + rng.uniform(-15, 15), 12 * 60 + rng.uniform(-10, 10))
        found += session(rng, day, 13 * 60 + 15 + rng.uniform(-15, 15),
                         17 * 60 + 30 + rng.uniform(-15, 15))
    return found


def evenings(rng: random.Random) -> list[float]:
    return [moment for day in each_day()
            for moment in session(rng, day, 19 * 60 + 30 + rng.uniform(-15, 15),
                                  22 * 60 + 30 + rng.uniform(-30, 30))]


def weekends(rng: random.Random) -> list[float]:
    found: list[float] = []
    for day in each_day():
        if day.weekday() < 5 or rng.random() > 0.7:
            continue
        for _ in range(rng.randint(1, 3)):
            start = rng.uniform(9 * 60, 18 * 60)
            found += session(rng, day, start, start + rng.uniform(20, 90))
    return sorted(found)


def holiday(rng: random.Random) -> list[float]:
    return office(rng, holiday=WEEKS // 2)


SHIFT_WEEK = WEEKS // 2


def shift(rng: random.Random) -> list[float]:
    """Weekday mornings, then from SHIFT_WEEK on weekday evenings instead."""
    found: list[float] = []
    for day in each_day():
        if day.weekday() >= 5:
            continue
        if (day - START).days // 7 < SHIFT_WEEK:
            found += session(rng, day, 8 * 60 + 30 + rng.uniform(-15, 15), 12 * 60 + 30)
        else:
            found += session(rng, day, 19 * 60 + rng.uniform(-15, 15), 22 * 60)
    return found


def uniform(rng: random.Random) -> list[float]:
    """Use at any hour: sessions of 10 to 60 minutes, two a day on average."""
    found: list[float] = []
    for day in each_day():
        for _ in range(sum(1 for _ in range(8) if rng.random() < 0.25)):
            start = rng.uniform(0, 24 * 60 - 60)
            found += session(rng, day, start, start + rng.uniform(10, 60))
    return sorted(found)


TRACES: dict[str, Callable[[random.Random], list[float]]] = {
    "weekday office": office, "evenings only": evenings, "irregular weekends": weekends,
    "holiday week": holiday, "mornings to evenings": shift, "uniformly random": uniform,
}
GOALS = {"weekday office": "ready >= 70 % at <= 10 % extra awake",
         "uniformly random": "<= 2 % extra awake",
         "mornings to evenings": "followed within 7 days"}


def followed_after(firsts: Sequence[tuple[float, bool]]) -> int | None:
    """Days from the shift to the first evening first use found ready."""
    shifted = learned.moment_at(START + timedelta(weeks=SHIFT_WEEK), 0)
    for moment, ready in firsts:
        if moment >= shifted and ready:
            return (date.fromtimestamp(moment) - date.fromtimestamp(shifted)).days
    return None


def read_trace(path: Path) -> list[float]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            found.append(float(text))
        except ValueError:
            try:
                found.append(datetime.fromisoformat(text).timestamp())
            except ValueError:
                raise SystemExit(f"{path}:{number}: not epoch seconds or ISO 8601: {text!r}") \
                    from None
    return sorted(found)


def measure(requests: Sequence[float], args: argparse.Namespace) -> dict:
    on, firsts = replay(requests, args.idle, args.wake, prewakes=True)
    off, _ = replay(requests, args.idle, args.wake, prewakes=False)
    extra = on.awake - off.awake
    return {"ready": on.ready / on.first_uses if on.first_uses else 0.0,
            "ready_before": off.ready / off.first_uses if off.first_uses else 0.0,
            "first_uses": on.first_uses, "saved": off.waited - on.waited,
            "extra_hours": extra / 3600, "extra_share": extra / off.awake if off.awake else 0.0,
            "kwh": extra / 3600 * args.watts / 1000, "prewakes": on.prewakes, "unused": on.unused,
            "followed": followed_after(firsts)}


def span(values: Sequence[float], form: str) -> str:
    low, high = min(values), max(values)
    return form.format(low) if form.format(low) == form.format(high) else \
        f"{form.format(low)} to {form.format(high)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--trace", type=Path, help="replay this trace instead of the built-in ones")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per built-in trace (5)")
    parser.add_argument("--idle", type=float, default=3600.0,
                        help="the box's [idle] timeout in seconds (3600)")
    parser.add_argument("--wake", type=float, default=30.0,
                        help="seconds from asleep to a ready server (30)")
    parser.add_argument("--watts", type=float, default=80.0,
                        help="what the box draws awake and idle more than asleep (80)")
    args = parser.parse_args(argv)
    began = time.process_time()
    if args.trace:
        requests = read_trace(args.trace)
        if not requests:
            raise SystemExit(f"{args.trace}: no requests")
        result = measure(requests, args)
        print(f"{args.trace}: {result['first_uses']} first uses, "
              f"{result['ready']:.0%} found the box ready ({result['ready_before']:.0%} without "
              f"pre-wakes), {result['saved'] / 60:.0f} min of waiting saved, "
              f"{result['extra_hours']:.1f} h more awake ({result['extra_share']:+.1%}, "
              f"{result['kwh']:.2f} kWh), {result['prewakes']} pre-wakes "
              f"({result['unused']} unused)")
        return 0
    print(f"{WEEKS} weeks a trace, {args.seeds} seeds, idle timeout {args.idle:g} s, wake "
          f"{args.wake:g} s, {args.watts:g} W; ranges over the seeds")
    print("| trace | first uses found ready | waiting saved | extra awake | extra kWh | "
          "pre-wakes (unused) | goal |")
    print("|---|---|---|---|---|---|---|")
    for name, make in TRACES.items():
        results = [measure(make(random.Random(seed)), args) for seed in range(args.seeds)]
        followed = [r["followed"] for r in results]
        goal = GOALS.get(name, "")
        if name == "mornings to evenings":
            goal += (": after " + span([f if f is not None else 99 for f in followed], "{:.0f}")
                     + " days")
        print(f"| {name} | {span([r['ready'] for r in results], '{:.0%}')} "
              f"(without: {span([r['ready_before'] for r in results], '{:.0%}')}) | "
              f"{span([r['saved'] / 60 for r in results], '{:.0f}')} min | "
              f"{span([r['extra_share'] for r in results], '{:+.1%}')} | "
              f"{span([r['kwh'] for r in results], '{:.2f}')} | "
              f"{span([r['prewakes'] for r in results], '{:.0f}')} "
              f"({span([r['unused'] for r in results], '{:.0f}')}) | {goal} |")
    print(f"({time.process_time() - began:.1f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
