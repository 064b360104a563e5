"""What the proxy believes of its backend, and for how long: pure, driven by the clock it is
handed (the event loop's), so tests drive it with plain numbers.

"Ready" is evidence with a shelf life: a ready check's 200 is trusted for READY_TRUST seconds (a
connect that succeeds proves nothing: llama-server accepts while it loads and answers 503).
"Asleep" too: once the backend did not answer, it is believed asleep for ASLEEP_TRUST, so that
each look at the model list does not wait on a probe again. "Known down" (a connect just
failed, or the box said it is going to sleep) lets the next wake send its first signal at once.
"""

from __future__ import annotations

from dataclasses import dataclass

READY_TRUST = 5.0  # seconds a 200 from the ready check is believed without asking again
ASLEEP_TRUST = 30.0  # seconds a backend that did not answer is believed asleep
# a box is looked at this often while nobody uses it: one that slept without a "sleeping" hint
# (a lid, a power cut, systemctl suspend) must not read awake for ever, nor one woken by
# something else asleep
WATCH_EVERY = 60.0


@dataclass
class Readiness:
    ready_until: float = 0.0  # until when the last successful ready check is trusted
    last_ready: float | None = None  # when the backend last answered its ready check
    asleep_until: float = 0.0  # until when the backend is believed asleep
    asleep_at: float | None = None  # when it last gave evidence of sleep (no answer, a hint)
    known_down: bool = False  # no grace before the next wake's first signal
    looked_at: float | None = None  # when the last look while nobody used it went out

    def is_ready(self, now: float) -> bool:
        return now < self.ready_until

    def believe_ready(self, now: float) -> None:
        self.last_ready, self.ready_until, self.asleep_until = now, now + READY_TRUST, 0.0

    def stale_soon(self, now: float) -> bool:
        """Half of the trust is spent: time to ask again in the background, before a client
        has to wait for it."""
        return now > self.ready_until - READY_TRUST / 2

    def not_ready(self) -> None:
        self.ready_until = 0.0

    def believe_asleep(self, now: float, *, down: bool = False) -> None:
        """It did not answer (down: a connect failed, or it said it goes to sleep)."""
        self.ready_until, self.asleep_until, self.asleep_at = 0.0, now + ASLEEP_TRUST, now
        self.known_down = self.known_down or down

    def is_asleep(self, now: float) -> bool:
        return now < self.asleep_until

    def look_due(self, now: float) -> bool:
        """Whether a box not asked since WATCH_EVERY is to be looked at: one last seen up (it
        may have slept without a word), or one believed asleep (something else may have woken
        it: a magic packet from elsewhere, its power button)."""
        last = max(self.last_ready or 0.0, self.asleep_at or 0.0, self.looked_at or 0.0)
        return ((self.last_ready is not None or self.asleep_at is not None)
                and not self.is_ready(now)
                and now - last >= WATCH_EVERY)

    def take_known_down(self) -> bool:
        """Whether the backend is known down, for one wake: its first signal goes out at once."""
        down, self.known_down = self.known_down, False
        return down
