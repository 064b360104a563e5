"""Readiness checks that never wait on each other.

A suspended box on a LAN does not refuse a connect: it answers nothing, and a probe to it hangs
for its whole connect timeout. Run one after the other, such probes made every wake pay up to
that timeout after the box came up, and a "ready" hint waited behind them. So each probe runs in
a thread of its own, from a pool of the prober's own (the event loop's default executor also
resolves names and fills the cache): a new one starts whenever it is due, whatever the earlier
ones are doing, and the first "ready" wins; answers still to come are then ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

Probe = Callable[[], tuple[bool, str]]

# a probe to a box that drops packets is held for its timeout: at PROBE_INTERVAL apart, about
# five are in flight at once; more than this and the wake's own probes wait, not a hint's
MOST_IN_FLIGHT = 8
SPARE = 4  # threads beyond that for a hint's probes, and as many for looks outside a wake


@dataclass(frozen=True)
class Answer:
    ready: bool
    why: str  # "HTTP 200", "HTTP 503", "Connection refused", "timed out"
    asked_at: float  # the loop's time when this probe started


class Prober:
    def __init__(self, loop: asyncio.AbstractEventLoop, most: int = MOST_IN_FLIGHT) -> None:
        self.loop, self.most = loop, most
        self.pool = ThreadPoolExecutor(most + 2 * SPARE, thread_name_prefix="sleepyllama-probe")
        self.in_flight: set[asyncio.Future[Answer]] = set()

    def start(self, probe: Probe, *, always: bool = False) -> bool:
        """Start one probe of the wake's; False when MOST_IN_FLIGHT are still out (always: a
        hint's, which may use a spare thread)."""
        if len(self.in_flight) >= self.most + (SPARE if always else 0):
            return False
        asked_at = self.loop.time()

        def run() -> Answer:
            try:
                ready, why = probe()
            except Exception as error:  # a bug must cost this probe only, and be seen
                log.exception("the readiness probe failed")
                return Answer(False, f"probe failed: {error}", asked_at)
            return Answer(ready, why, asked_at)

        future = self.loop.run_in_executor(self.pool, run)
        self.in_flight.add(future)
        future.add_done_callback(self.in_flight.discard)
        return True

    async def answers(self, until: float, woken: asyncio.Event) -> list[Answer]:
        """The answers that came in before `until` (the loop's time) or before `woken` was set,
        whichever is first; those of every probe that finished, in the order they were asked."""
        pending: set[asyncio.Future] = set(self.in_flight)
        if not any(future.done() for future in pending):
            waiting = self.loop.create_task(woken.wait())
            try:
                await asyncio.wait(pending | {waiting}, timeout=max(0.0, until - self.loop.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
        done = [future for future in pending if future.done()]
        for future in done:
            self.in_flight.discard(future)
        return sorted((future.result() for future in done if not future.cancelled()),
                      key=lambda answer: answer.asked_at)

    def forget(self) -> None:
        """The wake is over: answers still to come are not wanted (their threads end at their
        probe's timeout)."""
        for future in self.in_flight:
            future.cancel()
        self.in_flight.clear()

    async def once(self, probe: Probe) -> tuple[bool, str]:
        """One probe outside a wake (a look before a cached answer, a background refresh): in
        the prober's own threads, so it never waits behind the default executor's work."""
        return await self.loop.run_in_executor(self.pool, probe)

    def close(self) -> None:
        self.forget()
        self.pool.shutdown(wait=False, cancel_futures=True)
