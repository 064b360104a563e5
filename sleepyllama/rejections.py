"""What is refused from the network, said in the journal without letting a flood fill it: the
first refusal at once, then at most one line per `every` seconds with how many and why. A sender
of 100,000 bad datagrams a second must not push the lines that matter past journald's rate
limit."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

SAY_EVERY = 60.0  # seconds between two lines of one tally


class Rejections:
    def __init__(self, log: logging.Logger, what: str, every: float = SAY_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.what, self.every, self.clock = log, what, every, clock
        self.counts: Counter[str] = Counter()
        self.last_sender = ""
        self.said_at: float | None = None

    def note(self, why: str, sender: str) -> None:
        self.log.debug("ignored a datagram from %s: %s", sender, why)
        self.counts[why] += 1
        self.last_sender = sender
        self.tick()

    def tick(self) -> None:
        """Say what was counted, where the last line is `every` seconds old."""
        now = self.clock()
        if self.counts and (self.said_at is None or now - self.said_at >= self.every):
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Say what was counted now (at exit, say)."""
        if not self.counts:
            return
        total = sum(self.counts.values())
        reasons = "; ".join(f"{why}: {count}" for why, count in self.counts.most_common(3))
        more = f"; and {len(self.counts) - 3} other reason(s)" if len(self.counts) > 3 else ""
        since = ("" if self.said_at is None
                 else f" in the last {self.clock() - self.said_at:.0f} s")
        self.log.warning("ignored %d %s%s: %s%s (the last from %s)", total, self.what, since,
                         reasons, more, self.last_sender)
        self.counts.clear()
        self.said_at = self.clock() if now is None else now
