"""The backend's state and its table (proxy/wake_state.py), driven with plain numbers."""

from __future__ import annotations

import pytest

from sleepyllama.live_state import STATES, State
from sleepyllama.proxy.wake_state import EVIDENCE, TRANSITIONS, Happening, WakeState, after

ASLEEP, AWAKE, DID_NOT_WAKE, UNKNOWN, WAKING = (
    State.ASLEEP, State.AWAKE, State.DID_NOT_WAKE, State.UNKNOWN, State.WAKING)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def machine(said_asleep: bool = False) -> tuple[WakeState, Clock, list[int]]:
    clock, told = Clock(), []
    return WakeState(clock, said_asleep=said_asleep, changed=lambda: told.append(1)), clock, told


def test_the_table_names_only_states_the_page_knows() -> None:
    assert set(TRANSITIONS) == set(Happening)
    for row in TRANSITIONS.values():
        assert all(target is EVIDENCE or target.value in STATES for target in row.values())
        assert all(state.value in STATES for state in row)


def test_a_wake_shows_waking_from_its_first_signal_until_it_ends() -> None:
    """An answer while the held clients are still to be connected is the wake's to tell: the
    state says awake once they are (WOKE), not before."""
    state, clock, told = machine()
    state.happen(Happening.SIGNALLED)
    assert (state.state, state.since) == (WAKING, 100.0)
    clock.now = 108.0
    state.happen(Happening.ANSWERED)
    assert state.state is WAKING and state.since == 100.0
    state.happen(Happening.WOKE)
    assert (state.state, state.since, len(told)) == (AWAKE, 108.0, 3)


def test_a_wake_that_gave_up_stays_so_until_the_box_answers() -> None:
    state, _, _ = machine(said_asleep=True)
    assert state.state is ASLEEP
    state.happen(Happening.SIGNALLED)
    state.happen(Happening.GAVE_UP)
    assert state.state is DID_NOT_WAKE
    state.happen(Happening.SILENT)  # one more silence says less than the wake that failed
    assert state.state is DID_NOT_WAKE
    state.happen(Happening.ANSWERED)
    assert state.state is AWAKE


@pytest.mark.parametrize(("evidence", "ends"), [
    ((), UNKNOWN), ((Happening.ANSWERED,), AWAKE), ((Happening.ANSWERED, Happening.SILENT), ASLEEP)])
def test_a_wake_nobody_waits_for_ends_where_the_evidence_was(evidence: tuple[Happening, ...],
                                                             ends: State) -> None:
    """The latest evidence, however old: a box that answered and was not heard of since is up
    (its 5 s of trust are for connecting clients, not for a person's look); a failed connect
    or a "sleeping" hint after it says asleep, until it answers again."""
    state, _, _ = machine()
    for happening in evidence:
        state.happen(happening)
    state.happen(Happening.SIGNALLED)
    state.happen(Happening.ABANDONED)
    assert state.state is ends


def test_outside_a_wake_the_latest_evidence_is_the_state() -> None:
    assert after(UNKNOWN, Happening.ANSWERED, AWAKE) is AWAKE
    assert after(AWAKE, Happening.SILENT, ASLEEP) is ASLEEP
    assert after(ASLEEP, Happening.ANSWERED, AWAKE) is AWAKE
    assert after(AWAKE, Happening.ABANDONED, AWAKE) is AWAKE  # no wake ran: nothing ends


def test_a_reload_keeps_the_state_but_not_a_wake_that_is_the_retired_ones() -> None:
    before, clock, _ = machine()
    before.happen(Happening.SILENT)
    clock.now = 150.0
    before.happen(Happening.SIGNALLED)
    kept, _, _ = machine()
    kept.take_over(before)
    assert kept.state is ASLEEP
    before.happen(Happening.GAVE_UP)
    kept.take_over(before)
    assert (kept.state, kept.since) == (DID_NOT_WAKE, 150.0)
