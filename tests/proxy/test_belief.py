"""What the proxy believes of its backend outside a wake, driven in one process on the event
loop's clock: a box last seen up is looked at while nobody uses it."""

from __future__ import annotations

import asyncio

import pytest

from sleepyllama import config
from sleepyllama.proxy import readiness as readinesses
from sleepyllama.proxy.belief import Belief
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.prober import Prober
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import Happening

PROXY = config.parse('[proxy.llama]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                     ).proxy("llama")


def watched(answer: tuple[bool, str], seen_up_ago: float) -> tuple[str, int]:
    """(what the belief says after one second's watch, how many looks went out)."""
    looks = []

    async def run() -> str:
        loop = asyncio.get_running_loop()

        def probe() -> tuple[bool, str]:
            looks.append(1)
            return answer

        belief = Belief(WakeContext.built(PROXY, loop), AnswerCache("http://127.0.0.1:9", (), None),
                        Prober(loop), probe=probe, quick_probe=probe)
        belief.readiness.believe_ready(loop.time() - seen_up_ago)
        belief.state.happen(Happening.ANSWERED)
        belief.watch()
        if belief.watching is not None:
            await asyncio.wait_for(belief.watching, 30)  # its answer taken before this wakes
        belief.watch()  # the next second: no second look while the first is recent
        return belief.state.state

    return asyncio.run(run()), len(looks)


def test_a_box_that_slept_without_a_word_is_believed_asleep() -> None:
    """Found with a real Home Assistant: a box that slept without its "sleeping" hint (a lid,
    systemctl suspend, a power cut) read awake for as long as no client came."""
    assert watched((False, "Connection refused"), readinesses.WATCH_EVERY + 1) == ("asleep", 1)


@pytest.mark.parametrize("answer", [(True, "HTTP 200"), (False, "HTTP 503")])
def test_a_box_that_answers_stays_up(answer: tuple[bool, str]) -> None:
    assert watched(answer, readinesses.WATCH_EVERY + 1) == ("awake", 1)


def test_a_box_seen_up_lately_is_not_asked() -> None:
    assert watched((False, "Connection refused"), 10.0) == ("awake", 0)


def test_a_box_woken_by_something_else_is_seen_up() -> None:
    """Found with a real Home Assistant: after a wake the proxy did not make (a magic packet
    from elsewhere) the page counted the box asleep, and its kWh on, while it was up."""

    async def run() -> tuple[str, bool, list[str]]:
        loop = asyncio.get_running_loop()
        recorded: list[str] = []
        record = WakeRecord(sleep_open=True)
        context = WakeContext.built(PROXY, loop, record,
                                    to_ledger=lambda entry: recorded.append(entry.event))
        belief = Belief(context, AnswerCache("http://127.0.0.1:9", (), None), Prober(loop),
                        probe=lambda: (True, "HTTP 200"), quick_probe=lambda: (True, "HTTP 200"))
        belief.readiness.believe_asleep(loop.time() - readinesses.WATCH_EVERY - 1)
        belief.watch()
        assert belief.watching is not None
        await asyncio.wait_for(belief.watching, 30)
        return belief.state.state, belief.record.sleep_open, recorded

    assert asyncio.run(run()) == ("awake", False, ["box-up"])
