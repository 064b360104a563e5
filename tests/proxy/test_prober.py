"""Readiness checks that never wait on each other (proxy/prober.py), in one event loop with
probes that block until released: a probe to a box that drops packets must not hold up the
next, nor a hint's."""

from __future__ import annotations

import asyncio
import threading

from sleepyllama.proxy.prober import SPARE, Prober


class Hanging:
    """A probe that blocks until released, as a SYN to a suspended box does."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self) -> tuple[bool, str]:
        self.release.wait(60)
        return False, "timed out"


def test_a_hanging_probe_does_not_hold_up_a_ready_one() -> None:
    async def run() -> list[tuple[bool, str]]:
        loop = asyncio.get_running_loop()
        prober, hanging = Prober(loop), Hanging()
        try:
            assert prober.start(hanging)
            assert prober.start(lambda: (True, "HTTP 200"))
            answers = []
            while not answers:
                answers = await prober.answers(loop.time() + 30, asyncio.Event())
            return [(answer.ready, answer.why) for answer in answers]
        finally:
            hanging.release.set()
            prober.close()

    assert asyncio.run(run()) == [(True, "HTTP 200")]


def test_probes_in_flight_are_bounded_but_a_hint_may_use_a_spare() -> None:
    async def run() -> tuple[list[bool], bool, bool]:
        loop = asyncio.get_running_loop()
        prober, hanging = Prober(loop, most=2), Hanging()
        try:
            started = [prober.start(hanging) for _ in range(3)]
            hints = [prober.start(hanging, always=True) for _ in range(SPARE)]
            return started, all(hints), prober.start(hanging, always=True)
        finally:
            hanging.release.set()
            prober.close()

    assert asyncio.run(run()) == ([True, True, False], True, False)


def test_a_probe_that_raises_costs_that_probe_only() -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("a bug")

    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        prober = Prober(loop)
        try:
            prober.start(broken)
            answers = []
            while not answers:
                answers = await prober.answers(loop.time() + 30, asyncio.Event())
            prober.start(lambda: (True, "HTTP 200"))
            later = []
            while not later:
                later = await prober.answers(loop.time() + 30, asyncio.Event())
            return [answer.why for answer in answers + later]
        finally:
            prober.close()

    assert asyncio.run(run()) == ["probe failed: a bug", "HTTP 200"]


def test_a_hint_ends_the_wait_for_answers_at_once() -> None:
    async def run() -> list:
        loop = asyncio.get_running_loop()
        prober, hanging, hint = Prober(loop), Hanging(), asyncio.Event()
        try:
            prober.start(hanging)
            loop.call_soon(hint.set)
            return await prober.answers(loop.time() + 3600, hint)  # not an hour: the hint
        finally:
            hanging.release.set()
            prober.close()

    assert asyncio.run(asyncio.wait_for(run(), 60)) == []
