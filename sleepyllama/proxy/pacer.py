"""The wake signals of one wake, paced: the first after a grace (none, for a box known down),
then one each wol_interval while the wake goes on (WakeSchedule says when one is due)."""

from __future__ import annotations

import asyncio
import logging

from sleepyllama.proxy.client import Asker
from sleepyllama.proxy.waiting import Waiting
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_state import Happening
from sleepyllama.proxy.wol import WakeSchedule, WakeSender

log = logging.getLogger(__name__)

SEND_GRACE = 0.25  # an awake backend answers the first probe within this: no wake signal needed


class Pacer:
    def __init__(self, context: WakeContext, sender: WakeSender, waiting: Waiting) -> None:
        self.config, self.loop, self.record = context.config, context.loop, context.record
        self.sender, self.state = sender, context.state
        self.waiting = waiting  # the first of them is named in the wake's journal line
        self.schedule = WakeSchedule(self.config.wol_interval)
        self.timer: asyncio.TimerHandle | None = None

    def start(self, *, at_once: bool) -> None:
        self.timer = self.loop.call_later(0.0 if at_once else SEND_GRACE, self._send_when_due)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        self.stop()
        self.sender.close()

    def _send_when_due(self) -> None:
        """Send a wake signal now if the schedule allows; re-armed until stopped."""
        now = self.loop.time()
        first = self.waiting.first()
        # once a signal went out, the wake goes on without clients (wake.py)
        if (first is not None or self.record.started is not None) and self.schedule.due(now):
            began = self.record.started is None and first is not None
            if self.record.started is None and first is not None:
                self.record.first_signal(now, first.peer, first.request, first.agent,
                                         first.noted() if isinstance(first, Asker) else {})
                # naming the client tells a person who keeps waking the box (a polling frontend,
                # LiteLLM's background health checks: chats, but for their User-Agent)
                log.info("waking %s with %s: %d client(s) waiting, first %s%s%s (last probe: %s)",
                         self.config.backend, self.sender.describe(), len(self.waiting),
                         first.peer,
                         f" {first.request}" if first.request else "",
                         f" (User-Agent: {first.agent})" if first.agent else "",
                         self.record.last_probe or "none yet")
            if self.sender.send():  # count only what went out
                self.record.signals += 1
                log.debug("sent %s (%d)", self.sender.describe(), self.record.signals)
            self.schedule.mark_sent(now)
            if began:
                self.state.happen(Happening.SIGNALLED)
            else:
                self.state.shown()
        delay = self.schedule.seconds_until_due(now) or self.schedule.interval
        self.timer = self.loop.call_later(delay, self._send_when_due)
