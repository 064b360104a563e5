"""The record of a wake and what past ones taught, with plain numbers for the clock."""

from sleepyllama import ledger
from sleepyllama.proxy.wake_record import RECENT_GIVE_UP, WakeRecord


def test_a_give_up_is_noted_once_and_shortens_holds_for_a_while() -> None:
    record = WakeRecord()
    record.begin()
    assert record.hold_limit(0.0, 180.0) == 180.0
    assert record.give_up(100.0) is True and record.give_up(101.0) is False
    assert record.hold_limit(110.0, 180.0) == 30.0  # a sixth
    assert record.hold_limit(110.0, 12.0) == 5.0  # at least 5 s
    assert record.hold_limit(100.0 + RECENT_GIVE_UP, 180.0) == 180.0
    assert record.earlier_attempt(160.0, 150.0, 180.0) == (
        "it did not wake within 3m at the attempt 1m ago either")
    assert record.earlier_attempt(160.0, 90.0, 180.0) == ""  # that client's own attempt
    record.begin()
    record.ready(20.0, woken=True)
    assert record.hold_limit(130.0, 180.0) == 180.0  # it woke: full holds again


def test_what_wakes_took_sets_retry_after() -> None:
    record = WakeRecord.remembering([ledger.Wake(ready_after=40.0),
                                     ledger.Resume(), ledger.Wake(gave_up_after=3)])
    assert record.retry_after() == 40
    record.ready(11.5, woken=True)
    record.ready(12.2, woken=True)
    assert record.retry_after() == 13  # the median of 40, 11.5, 12.2, rounded up
    assert WakeRecord().retry_after() == 30
    unsignalled = WakeRecord()
    unsignalled.ready(0.1, woken=False)  # confirmed ready with no signal needed: not a wake
    assert unsignalled.retry_after() == 30


def test_phase_and_first_client() -> None:
    record = WakeRecord()
    record.begin()
    assert record.phase() == "waking"
    record.last_probe = "HTTP 503"
    assert record.phase() == "loading"
    record.first_signal(5.0, "10.0.0.2:5000", "POST /v1/chat/completions", "")
    assert record.started == 5.0 and record.first == {"first": "10.0.0.2:5000",
                                                      "request": "POST /v1/chat/completions"}


def test_the_box_is_up_when_it_first_answers_anything() -> None:
    record = WakeRecord()
    record.begin()
    record.probed("timed out", 1.0)
    record.probed("No route to host", 3.0)
    assert record.up_after is None
    record.probed("Connection refused", 6.2)  # its kernel answers: up, the server not yet
    record.probed("HTTP 503", 7.0)
    assert record.up_after == 6.2 and record.last_probe == "HTTP 503"


def test_a_box_that_powers_off_is_given_a_cold_boots_time_and_learned_apart() -> None:
    from sleepyllama.config import DEFAULT_WAKE_TIMEOUT

    resumes = [ledger.Wake(ready_after=8.0), ledger.Wake(ready_after=9.0)]
    record = WakeRecord.remembering([*resumes, ledger.BoxSleeping(action="poweroff")])
    assert record.asleep_as == "poweroff"
    # nothing learned of a cold boot yet: the resumes from suspend say nothing of one
    assert record.typical() is None and record.retry_after() == 120
    assert record.expectation() == "booting: about 2m"
    assert record.hold_limit(0.0, DEFAULT_WAKE_TIMEOUT) == 300.0  # a cold boot fits
    assert record.hold_limit(0.0, 60.0) == 60.0  # a wake_timeout of the user's own stands
    record.ready(95.0, woken=True)
    assert record.past[-1].woke_from == "poweroff" and record.retry_after() == 95
    assert record.expectation() == "booting: usually 1m35s here"
    record.asleep_as = "suspend"  # it suspends again: its own wakes count
    assert record.retry_after() == 9 and record.hold_limit(0.0, DEFAULT_WAKE_TIMEOUT) == 180.0
    assert WakeRecord().expectation() == ""  # a suspend before any wake: nothing to say


def test_a_box_up_with_nothing_listening_is_told_after_its_kind_needs_not_wake_timeout() -> None:
    record = WakeRecord()
    record.begin()
    record.probed("timed out", 1.0)  # asleep
    record.probed("Connection refused", 3.0)  # its kernel answers: up, nothing on the port
    assert record.phase() == "refused"
    assert not record.refused_too_long(30.0, "llama-server")  # it listens within 30 s
    assert record.refused_too_long(33.5, "llama-server")
    assert not record.refused_too_long(600.0, "vllm")  # it loads before it listens
    assert not record.refused_too_long(600.0, "none")  # not known: waited out
    record.probed("HTTP 503", 34.0)  # listening now: loading
    assert not record.refused_too_long(100.0, "llama-server") and record.phase() == "loading"
    assert record.phases() == {"up_after": 3.0, "served_after": 34.0}
    # learned: a box whose server listened 2 s after it answered is told after 15 s
    learned = WakeRecord.remembering([ledger.Wake(ready_after=9.0, up_after=3.0, served_after=5.0)])
    learned.begin()
    learned.probed("Connection refused", 3.0)
    assert not learned.refused_too_long(17.0, "vllm") and learned.refused_too_long(18.5, "vllm")


def test_a_sleep_the_box_told_of_is_open_until_it_is_seen_up() -> None:
    told = [ledger.BoxSleeping(action="suspend")]
    assert WakeRecord.remembering(told).sleep_open
    assert not WakeRecord.remembering([*told, ledger.BoxUp()]).sleep_open
    assert not WakeRecord.remembering([*told, ledger.Wake(ready_after=9.0)]).sleep_open
    assert WakeRecord.remembering([*told, ledger.Wake(gave_up_after=180.0)]).sleep_open
    record = WakeRecord.remembering(told)
    assert record.answered() is True  # ends it: to be recorded once
    assert record.answered() is False
