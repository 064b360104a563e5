"""The wake signals of one wake, paced (proxy/pacer.py): none within the grace an awake box
answers in, none at all once stopped, at once for a box known down; and the state shows the
wake from the first signal."""

from __future__ import annotations

import asyncio

import pytest

from sleepyllama import config
from sleepyllama.live_state import State
from sleepyllama.proxy import pacer as pacer_module
from sleepyllama.proxy.client import Asker
from sleepyllama.proxy.pacer import SEND_GRACE, Pacer
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import WakeState

PROXY = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                     'wol_interval = "1s"\n').proxy("t")


class Sender:
    """A wake signal that goes out (or not: `fails`), each one told to the test."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.sent = fails, asyncio.Event()
        self.times: list[float] = []

    def send(self) -> bool:
        self.times.append(asyncio.get_running_loop().time())
        self.sent.set()
        return not self.fails

    def describe(self) -> str:
        return "a magic packet"

    def close(self) -> None:
        pass


class OneWaiting:
    def __init__(self) -> None:
        self.asker = Asker("10.0.0.2:5000", "POST /v1/chat/completions", "openai/1.0")

    def __len__(self) -> int:
        return 1

    def first(self) -> Asker:
        return self.asker


def paced(at_once: bool, fails: bool = False, stopped: bool = False
          ) -> tuple[list[float], WakeRecord, State]:
    """(when signals went, seconds after start; the record; the state)."""

    async def run() -> tuple[list[float], WakeRecord, State]:
        loop = asyncio.get_running_loop()
        sender, record, state = Sender(fails), WakeRecord(), WakeState(loop.time)
        context = WakeContext(PROXY, loop, record, state)
        pacer = Pacer(context, sender, OneWaiting())  # type: ignore[arg-type]
        started = loop.time()
        pacer.start(at_once=at_once)
        if stopped:  # the first probe answered: the wake ends before its grace
            pacer.stop()
            await asyncio.sleep(2 * SEND_GRACE)  # past when the first would have gone
        else:
            await asyncio.wait_for(sender.sent.wait(), 30)
        pacer.close()
        return [at - started for at in sender.times], record, state.state

    return asyncio.run(run())


def test_the_first_signal_waits_out_the_grace_and_names_its_client() -> None:
    times, record, state = paced(at_once=False)
    assert len(times) == 1 and times[0] >= SEND_GRACE
    assert (record.signals, record.first["first"]) == (1, "10.0.0.2:5000")
    assert state is State.WAKING


def test_a_box_known_down_is_signalled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a grace of an hour, a signal within the test's time is one that did not wait for
    it (no bound on how quickly a loaded machine runs the loop)."""
    monkeypatch.setattr(pacer_module, "SEND_GRACE", 3600.0)
    times, _, _ = paced(at_once=True)
    assert len(times) == 1 and times[0] < 3600.0


def test_a_box_that_answered_within_the_grace_gets_no_signal() -> None:
    times, record, state = paced(at_once=False, stopped=True)
    assert (times, record.started, state) == ([], None, State.UNKNOWN)


def test_a_signal_that_did_not_go_out_is_not_counted() -> None:
    times, record, state = paced(at_once=True, fails=True)
    assert (len(times), record.signals, state) == (1, 0, State.WAKING)
