"""What the parts of one wake share (proxy/wake_context.py): one record and one state, so that
what one part tells, the others and the program see."""

from __future__ import annotations

from sleepyllama import config, sleep_actions
from sleepyllama.live_state import State
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import Happening

PROXY = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                     ).proxy("t")


class Loop:
    """The event loop as a context reads it: its clock alone."""

    def time(self) -> float:
        return 100.0


def test_a_context_alone_starts_where_the_ledger_left_the_box_and_tells_nobody() -> None:
    loop = Loop()
    context = WakeContext.built(PROXY, loop, WakeRecord(sleep_open=True))  # type: ignore[arg-type]
    assert context.state.state is State.ASLEEP and context.state.since == 100.0
    context.state.happen(Happening.ANSWERED)  # nobody to tell: nothing raised
    context.closed()
    assert context.state.state is State.AWAKE


def test_the_wake_timeout_is_a_cold_boots_where_the_box_powers_off() -> None:
    context = WakeContext.built(PROXY, Loop())  # type: ignore[arg-type]
    assert context.wake_timeout() == PROXY.wake_timeout
    context.record.asleep_as = "poweroff"
    assert context.wake_timeout() == max(PROXY.wake_timeout, sleep_actions.COLD_BOOT_WAKE_TIMEOUT)
