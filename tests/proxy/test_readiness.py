"""What the proxy believes of its backend, with plain numbers for the clock."""

from sleepyllama.proxy.readiness import ASLEEP_TRUST, READY_TRUST, Readiness


def test_ready_has_a_shelf_life_and_is_refreshed_before_it_runs_out() -> None:
    belief = Readiness()
    assert not belief.is_ready(0.0)
    belief.believe_ready(100.0)
    assert belief.is_ready(100.0 + READY_TRUST - 0.01) and not belief.is_ready(100.0 + READY_TRUST)
    assert not belief.stale_soon(100.0 + READY_TRUST / 2 - 0.01)
    assert belief.stale_soon(100.0 + READY_TRUST / 2 + 0.01)
    assert belief.last_ready == 100.0
    belief.not_ready()
    assert not belief.is_ready(100.0) and belief.last_ready == 100.0  # it did answer, once


def test_asleep_is_believed_for_a_while_and_down_only_for_one_wake() -> None:
    belief = Readiness()
    belief.believe_ready(0.0)
    belief.believe_asleep(1.0)
    assert not belief.is_ready(1.0) and belief.is_asleep(1.0 + ASLEEP_TRUST - 0.01)
    assert not belief.is_asleep(1.0 + ASLEEP_TRUST)
    assert belief.take_known_down() is False  # no answer is not a failed connect
    belief.believe_asleep(2.0, down=True)
    assert belief.take_known_down() is True and belief.take_known_down() is False
    belief.believe_ready(3.0)
    assert not belief.is_asleep(3.0)
