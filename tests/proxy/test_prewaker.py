"""Learned pre-wakes as the proxy makes them (proxy/prewaker.py), on a clock the test sets, from
a ledger the test writes; then once through a real Backend, to the magic packet and the
ledger's entry."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, timedelta

import pytest
from test_learned import MONDAY, at, weekday_mornings

from sleepyllama import config, learned, ledger
from sleepyllama.live_state import Prewakes
from sleepyllama.proxy.client import Asker
from sleepyllama.proxy.prewaker import Prewaker

EXPECTED = at(MONDAY, "08:30")
LEAD = 20.0 + learned.MARGIN


pytestmark = pytest.mark.usefixtures("utc")  # weekdays and times of day: UTC's


class FakeWake:
    def __init__(self) -> None:
        self.ready, self.running = False, False
        self.asked: list[Asker] = []

    def under_way(self) -> bool:
        return self.running

    def in_background(self, asker: Asker) -> None:
        self.asked.append(asker)
        self.running = True


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_ledger(path, entries: list[ledger.Entry]) -> None:
    path.write_text("".join(json.dumps(ledger.to_json(entry, "b")) + "\n" for entry in entries))


def proxy_config(extra: str = 'prewake = "learned"\n') -> config.ProxyConfig:
    return config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                        + extra).proxy("t")


def prewaker_at(tmp_path, now: float, extra: str = 'prewake = "learned"\n'
                ) -> tuple[Prewaker, FakeWake, Clock]:
    path = tmp_path / "t.ledger.jsonl"
    write_ledger(path, weekday_mornings(3))
    wake, clock = FakeWake(), Clock(now)
    return Prewaker(proxy_config(extra), wake, path, clock), wake, clock  # type: ignore[arg-type]


def test_the_box_is_woken_at_the_learned_time_and_once(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    prewaker, wake, clock = prewaker_at(tmp_path, at(MONDAY, "07:00"))
    prewaker.tick()
    assert prewaker.next() is not None and prewaker.next().at == EXPECTED - LEAD
    clock.now = EXPECTED - LEAD - 1
    prewaker.tick()
    assert wake.asked == []
    clock.now = EXPECTED - LEAD
    prewaker.tick()
    assert len(wake.asked) == 1
    asked = wake.asked[0]
    assert (asked.peer, asked.cause, asked.expected) == (
        learned.LEARNED, "learned: weekdays about 08:30", round(EXPECTED))
    assert "pre-waking 127.0.0.1:9 for the use expected Mon 08:30 (learned: weekdays about " \
           "08:30)" in caplog.text
    wake.running = False  # it woke, and the box went back to sleep at once
    clock.now += 60
    prewaker.tick()
    assert len(wake.asked) == 1, "woken twice for one habit"
    assert prewaker.next() is None or prewaker.next().expected > EXPECTED


def test_a_box_that_is_up_is_not_woken_until_it_sleeps_within_the_half_hour(tmp_path,
                                                                           caplog) -> None:
    caplog.set_level(logging.INFO)
    prewaker, wake, clock = prewaker_at(tmp_path, EXPECTED - LEAD)
    wake.ready = True
    prewaker.tick()
    clock.now += 1
    prewaker.tick()
    assert wake.asked == []
    assert caplog.text.count("no pre-wake of 127.0.0.1:9 needed") == 1  # said once, not each second
    assert "it is up; should it sleep before 09:00, it is woken then" in caplog.text
    wake.ready = False  # it slept (its idle timeout ran out at 08:29)
    clock.now = EXPECTED - 60
    prewaker.tick()
    assert len(wake.asked) == 1


def test_none_once_the_half_hour_is_over(tmp_path) -> None:
    prewaker, wake, _ = prewaker_at(tmp_path, EXPECTED + learned.SPAN * 60)
    prewaker.tick()
    assert wake.asked == []


def test_while_off_nothing_is_woken_but_what_was_learned_is_shown(tmp_path) -> None:
    prewaker, wake, _ = prewaker_at(tmp_path, EXPECTED - LEAD, extra="")
    prewaker.tick()
    assert wake.asked == []
    assert prewaker.shown() == Prewakes("off", None, "", ("weekdays about 08:30",))


def test_a_prewake_never_window_is_kept_and_said(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    prewaker, wake, _ = prewaker_at(
        tmp_path, EXPECTED - LEAD,
        extra='prewake = "learned"\nprewake_never = ["Mon 00:00..08:30"]\n')
    prewaker.tick()
    assert wake.asked == []
    assert "that lies within prewake_never 'Mon 00:00..08:30'" in caplog.text
    assert prewaker.next() is not None and date.fromtimestamp(prewaker.next().at) > MONDAY


def test_a_reload_does_not_wake_again_for_what_was_woken_for(tmp_path) -> None:
    prewaker, wake, clock = prewaker_at(tmp_path, EXPECTED - LEAD)
    prewaker.tick()
    reloaded = Prewaker(proxy_config(), wake, prewaker.ledger_file, clock)  # type: ignore[arg-type]
    reloaded.take_over(prewaker)
    wake.running = False
    clock.now += 5
    reloaded.tick()
    assert len(wake.asked) == 1


def test_the_plan_is_made_again_as_the_days_pass(tmp_path) -> None:
    """A plan is of the days before today: one made weeks ago knows nothing of today."""
    prewaker, wake, clock = prewaker_at(tmp_path, at(MONDAY - timedelta(weeks=3), "07:00"))
    prewaker.tick()
    assert prewaker.plan == []
    clock.now = EXPECTED - LEAD
    prewaker.tick()
    assert len(wake.asked) == 1


def test_a_learned_pre_wake_goes_out_as_a_magic_packet_and_is_in_the_ledger(tmp_path) -> None:
    """Through the real Backend and wake loop: the probe says the box sleeps until the packet,
    then that it is ready."""
    from sleepyllama.proxy.backend import Backend

    from proxy.stand_ins import NoSignal

    ledger_file = tmp_path / "t.ledger.jsonl"
    write_ledger(ledger_file, weekday_mornings(3))
    signal = NoSignal()

    def probe() -> tuple[bool, str]:
        return (True, "HTTP 200") if signal.sent else (False, "timed out")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy_config(), loop, signal, probe=probe, ledger_file=ledger_file)
        backend.prewaker.clock = Clock(EXPECTED - LEAD + 1)
        backend.prewaker.tick()
        deadline = loop.time() + 20
        while not backend.wake.ready and loop.time() < deadline:
            await asyncio.sleep(0.01)
        backend.close_all()

    asyncio.run(scenario())
    assert signal.sent >= 1
    woken = [entry for entry in ledger.read(ledger_file)
             if isinstance(entry, ledger.Wake) and entry.first == learned.LEARNED]
    assert len(woken) == 1, woken
    assert woken[0].cause == "learned: weekdays about 08:30"
    assert woken[0].expected == round(EXPECTED) and woken[0].ready_after is not None


def test_a_new_day_is_planned_at_its_start(tmp_path) -> None:
    """Past midnight the day before counts too: the plan is made again then, not up to an hour
    later."""
    prewaker, _, clock = prewaker_at(tmp_path, at(MONDAY, "00:00") - 60)
    prewaker.tick()
    made = prewaker.planned_at
    clock.now = at(MONDAY, "00:00") + 1
    prewaker.tick()
    assert prewaker.planned_at > made, "not planned again at midnight"
