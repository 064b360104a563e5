"""The idle decision as a table: readings, stored state, now -> verdict and reason."""

import pytest

from sleepyllama.host.idle import Action, IdleState, decide
from sleepyllama.host.signals.base import Activity, Reading

BOOT, OTHER_BOOT = "boot-a", "boot-b"
HOUR = 3600.0
IDLE_GPU = Reading("gpu", Activity.IDLE, "GPU 0 P8")
BUSY_GPU = Reading("gpu", Activity.BUSY, "GPU 0 at P2")
IDLE_SLOTS = Reading("servers", Activity.IDLE, "llama: 0/4 slots busy")
BUSY_SLOTS = Reading("servers", Activity.BUSY, "llama: 1/4 slots busy")
NO_SMI = Reading("gpu", Activity.UNKNOWN, "nvidia-smi not found")
INHIBITED = Reading("inhibitors", Activity.BUSY, "sleep inhibited by make (build)")


@pytest.mark.parametrize(("readings", "state", "now", "action", "idle_since", "words"), [
    # first idle check starts the clock
    ([IDLE_GPU, IDLE_SLOTS], None, 1000.0, Action.STAY_AWAKE, 1000.0, "idle for 0s, sleeping in 1h"),
    # idle, not yet long enough
    ([IDLE_GPU, IDLE_SLOTS], IdleState(BOOT, 1000.0, 2770.0), 1000.0 + 1800, Action.STAY_AWAKE, 1000.0,
     "idle for 30m, sleeping in 30m"),
    # idle long enough: sleep
    ([IDLE_GPU, IDLE_SLOTS], IdleState(BOOT, 1000.0, 4570.0), 1000.0 + HOUR, Action.SLEEP, 1000.0,
     "idle for 1h (timeout 1h)"),
    # any busy signal resets the clock
    ([IDLE_GPU, BUSY_SLOTS], IdleState(BOOT, 1000.0), 1000.0 + 2 * HOUR, Action.STAY_AWAKE, None,
     "busy: llama: 1/4 slots busy"),
    ([BUSY_GPU, IDLE_SLOTS], IdleState(BOOT, 1000.0), 5000.0, Action.STAY_AWAKE, None,
     "busy: GPU 0 at P2"),
    ([IDLE_GPU, INHIBITED], IdleState(BOOT, 1000.0), 5000.0, Action.STAY_AWAKE, None,
     "sleep inhibited by make"),
    # a signal that cannot be read counts as busy, never as idle
    ([NO_SMI, IDLE_SLOTS], IdleState(BOOT, 1000.0), 1000.0 + 2 * HOUR, Action.STAY_AWAKE, None,
     "gpu unreadable, counted busy: nvidia-smi not found"),
    # a state from another boot does not count: the clock starts again
    ([IDLE_GPU], IdleState(OTHER_BOOT, 10.0), 20.0 + 2 * HOUR, Action.STAY_AWAKE, 20.0 + 2 * HOUR,
     "idle for 0s"),
    # a clock from the future (a corrupt or foreign file) is not trusted
    ([IDLE_GPU], IdleState(BOOT, 9e9), 100.0, Action.STAY_AWAKE, 100.0, "idle for 0s"),
    # no signal configured at all: idle by the clock alone
    ([], IdleState(BOOT, 0.0, HOUR - 30), HOUR, Action.SLEEP, 0.0, "no signal configured"),
])
def test_decide(readings, state, now, action, idle_since, words) -> None:
    verdict = decide(readings, state, now, BOOT, HOUR)
    assert verdict.action is action
    assert verdict.state == IdleState(BOOT, idle_since)
    assert words in verdict.reason


def test_sleep_in_counts_down_and_busy_has_none() -> None:
    verdict = decide([IDLE_GPU], IdleState(BOOT, 0.0, 570.0), 600.0, BOOT, HOUR)
    assert (verdict.idle_for, verdict.sleep_in) == (600.0, 3000.0)
    busy = decide([BUSY_GPU], IdleState(BOOT, 0.0), 600.0, BOOT, HOUR)
    assert (busy.idle_for, busy.sleep_in) == (0.0, None)


def test_time_no_check_looked_at_never_counts_as_idle() -> None:
    """The timer stopped for 2 h (or the box was too loaded to run it): the first check after
    must not suspend at once. Only time between looks counts, each gap at most MAX_UNWATCHED."""
    from sleepyllama.host.idle import MAX_UNWATCHED

    watched = decide([IDLE_GPU], IdleState(BOOT, 0.0, 1800.0), 1830.0, BOOT, HOUR)
    assert watched.idle_for == 1830.0 and watched.state.looked_at == 1830.0
    after_a_gap = decide([IDLE_GPU], IdleState(BOOT, 0.0, 1800.0), 1800.0 + 2 * HOUR, BOOT, HOUR)
    assert after_a_gap.action is Action.STAY_AWAKE
    assert after_a_gap.idle_for == 1800.0 + MAX_UNWATCHED
    assert "no check for 2h: that time does not count" in after_a_gap.reason
    # a state without the time of its look (written before it was kept) cannot say how much of
    # its gap was watched: the clock starts again rather than counting hours unwatched as idle
    old = decide([IDLE_GPU], IdleState(BOOT, 0.0), 2 * HOUR, BOOT, HOUR)
    assert old.action is Action.STAY_AWAKE and old.idle_for == 0.0
