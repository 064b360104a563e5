"""Where use of the box begins while it is up: the first client connected to it after QUIET
without one is noted in the ledger (first-use). With the wakes that clients cause, this is what
learned pre-wakes learn from (learned.py), whether they are on or not yet."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sleepyllama import ledger
from sleepyllama.learned import QUIET
from sleepyllama.words import format_duration

log = logging.getLogger(__name__)


class Uses:
    def __init__(self, clock: Callable[[], float],
                 to_ledger: Callable[[ledger.Entry], None]) -> None:
        self.clock, self.to_ledger = clock, to_ledger
        self.last = clock()  # a fresh proxy knows of no quiet before it

    def connected(self, peer: str) -> None:
        """A client goes to the backend now."""
        now = self.clock()
        if now - self.last >= QUIET:
            log.info("%s is the first client in %s: a use begins (noted for learned pre-wakes)",
                     peer, format_duration(round(now - self.last)))
            self.to_ledger(ledger.FirstUse(client=peer))
        self.last = now
