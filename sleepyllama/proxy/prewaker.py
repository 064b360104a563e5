"""Learned pre-wakes ([proxy.NAME] prewake = "learned"): the box woken ahead of the times its use
begins, as its ledger teaches (learned.py), so that the server is ready when the person comes.

A box that is up (a [schedule] awake window, a stay-awake, a user) needs none: the pre-wake
waits, until the end of its half-hour, for the box to sleep. One that falls in a prewake_never
window is passed over. Each decision is logged with its reason; each pre-wake is a wake like
any other (journal, ledger, page), with its cause. While prewake is "off" the plan is still
made, for the page and `sleepyllama history` to show what turning it on would do.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sleepyllama import learned, ledger
from sleepyllama.config import ProxyConfig
from sleepyllama.learned import Prewake
from sleepyllama.live_state import Prewakes
from sleepyllama.proxy.client import Asker
from sleepyllama.proxy.wake import Wake

log = logging.getLogger(__name__)

# seconds: a plan is of the days before today, made again when the date changes; this catches a
# wake time that changed (the lead), and reading a long ledger costs the loop tens of ms
REPLAN_EVERY = 3600.0


def at_clock(moment: float) -> str:
    return time.strftime("%a %H:%M", time.localtime(moment))


class Prewaker:
    def __init__(self, config: ProxyConfig, wake: Wake, ledger_file: Path | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.wake, self.ledger_file, self.clock = config, wake, ledger_file, clock
        self.plan: list[Prewake] = []
        self.planned_at = -math.inf
        self.planned_for: date | None = None  # the day the plan was made on
        self.done: set[float] = set()  # the expected starts woken for or passed over
        self.told: set[float] = set()  # ... whose "up already" was logged

    @property
    def on(self) -> bool:
        return self.config.prewake == "learned"

    def take_over(self, previous: Prewaker) -> None:
        """A reload: what the config before it woke for is not woken for again."""
        self.done |= previous.done
        self.told |= previous.told

    def tick(self) -> None:
        """Every second: a pre-wake whose time has come is made, or why not is logged."""
        now = self.clock()
        if (now - self.planned_at >= REPLAN_EVERY or now < self.planned_at
                or date.fromtimestamp(now) != self.planned_for):
            self.replan(now)
        if not self.on:
            return
        for prewake in self.plan:
            if prewake.at <= now < prewake.until and prewake.expected not in self.done:
                self._consider(prewake)

    def replan(self, now: float) -> None:
        entries = ledger.read(self.ledger_file) if self.ledger_file is not None else []
        self.plan, self.planned_at = learned.plan(entries, now, self.config.prewake_never), now
        self.planned_for = date.fromtimestamp(now)

    def next(self) -> Prewake | None:
        """The next pre-wake that will be made, if the box is asleep then."""
        now = self.clock()
        return next((prewake for prewake in self.plan if self.on and not prewake.never
                     and prewake.until > now and prewake.expected not in self.done), None)

    def shown(self) -> Prewakes:
        """For live.json: the next pre-wake and what was learned (the page, Home Assistant)."""
        upcoming = self.next()
        return Prewakes(self.config.prewake, None if upcoming is None else round(upcoming.at),
                        "" if upcoming is None else upcoming.cause,
                        tuple(learned.describe(self.plan)))

    def _consider(self, prewake: Prewake) -> None:
        backend, expected = self.config.backend, at_clock(prewake.expected)
        if prewake.never:
            self.done.add(prewake.expected)
            log.info("not pre-waking %s for the use expected %s (%s): that lies within "
                     "prewake_never %r", backend, expected, prewake.cause, prewake.never)
            return
        if self.wake.ready or self.wake.under_way():
            if prewake.expected not in self.told:
                self.told.add(prewake.expected)
                log.info("no pre-wake of %s needed for the use expected %s (%s): it is %s; "
                         "should it sleep before %s, it is woken then", backend, expected,
                         prewake.cause, "up" if self.wake.ready else "waking",
                         time.strftime("%H:%M", time.localtime(prewake.until)))
            return
        self.done.add(prewake.expected)
        log.info("pre-waking %s for the use expected %s (%s)", backend, expected, prewake.cause)
        self.wake.in_background(Asker(learned.LEARNED, "learned pre-wake", cause=prewake.cause,
                                      expected=round(prewake.expected)))
