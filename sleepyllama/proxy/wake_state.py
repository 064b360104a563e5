"""What the backend is now, as one state moved by one table: pure, handed the clock.

Everything that changes what the proxy shows of its backend (STATUS, NAME.live.json, and from
it the page, the metrics and Home Assistant; a stream's progress) is a Happening, reported here
by the part that saw it: the pacer (a signal went out), the belief (an answer, or silence), the
wake (it ended, and how). TRANSITIONS says what each makes of each state, and `changed`, the one
change event, tells the proxy's program to show it. What else a person sees moves without a new
state (a client more waits, one more signal went out): `shown()` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from sleepyllama.live_state import State

ASLEEP, AWAKE, DID_NOT_WAKE, UNKNOWN, WAKING = (
    State.ASLEEP, State.AWAKE, State.DID_NOT_WAKE, State.UNKNOWN, State.WAKING)


class Happening(Enum):
    SIGNALLED = "the first wake signal of a wake went out"
    ANSWERED = "the ready check answered (a look, a probe, a refresh)"
    SILENT = "no answer to a look, a failed connect, or the box said it goes to sleep"
    WOKE = "the wake ended: the backend is ready"
    GAVE_UP = "the wake ended, not ready, having given up on a client"
    ABANDONED = "the wake ended, not ready, nobody waiting any more"


# the state the latest evidence (ANSWERED, SILENT) gave: where a wake nobody waits for ends
EVIDENCE = None

# what each happening makes of each state; a state a happening does not name stays as it is
TRANSITIONS: dict[Happening, dict[State, State | None]] = {
    Happening.SIGNALLED: {UNKNOWN: WAKING, ASLEEP: WAKING, AWAKE: WAKING, DID_NOT_WAKE: WAKING},
    # while waking, an answer is the wake's to tell: it ends (WOKE) once the held are connected
    Happening.ANSWERED: {UNKNOWN: AWAKE, ASLEEP: AWAKE, DID_NOT_WAKE: AWAKE},
    # a wake under way, or one that gave up, says more than one more silence
    Happening.SILENT: {UNKNOWN: ASLEEP, AWAKE: ASLEEP},
    Happening.WOKE: {UNKNOWN: AWAKE, ASLEEP: AWAKE, WAKING: AWAKE, DID_NOT_WAKE: AWAKE},
    Happening.GAVE_UP: {UNKNOWN: DID_NOT_WAKE, ASLEEP: DID_NOT_WAKE, WAKING: DID_NOT_WAKE,
                        AWAKE: DID_NOT_WAKE},
    Happening.ABANDONED: {WAKING: EVIDENCE},
}


def after(state: State, happening: Happening, evidence: State) -> State:
    """The state `happening` leads to from `state`; evidence: what the last answer or silence
    said (UNKNOWN before either)."""
    table = TRANSITIONS[happening]
    if state not in table:
        return state
    return table[state] or evidence


class WakeState:
    """The state, since when (the clock's time), and the one change event."""

    def __init__(self, clock: Callable[[], float], *, said_asleep: bool = False,
                 changed: Callable[[], None] = lambda: None) -> None:
        """said_asleep: the ledger says the box went to sleep and was not seen up since."""
        self.clock, self.changed = clock, changed
        self.state = self.evidence = ASLEEP if said_asleep else UNKNOWN
        self.since = clock()

    def happen(self, happening: Happening) -> None:
        if happening is Happening.ANSWERED or happening is Happening.WOKE:
            self.evidence = AWAKE
        elif happening is Happening.SILENT:
            self.evidence = ASLEEP
        state = after(self.state, happening, self.evidence)
        if state is not self.state:
            self.state, self.since = state, self.clock()
        self.changed()

    def shown(self) -> None:
        """Something a person sees changed, not the state (a client waits, a signal more)."""
        self.changed()

    def take_over(self, before: WakeState) -> None:
        """A reload for the same box: its state, and since when, still hold; but a wake under
        way is the retired one's, which runs on apart, so this one is what the evidence said."""
        self.evidence, self.state, self.since = before.evidence, before.state, before.since
        if self.state is WAKING:
            self.state, self.since = self.evidence, self.clock()
