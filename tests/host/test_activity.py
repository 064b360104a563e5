"""The judgement of a look against the counter the previous idle check stored, whatever the
server's kind (each kind's own parsing: tests/kinds/)."""

from __future__ import annotations

import pytest

from sleepyllama.host.activity import Counter, Look, judge, moved

# -- counters between two checks ------------------------------------------------------------------

def test_a_counter_that_moved_is_counted() -> None:
    before = Counter(100, "start-1", at=1000.0)
    assert moved(before, Look(work=103, epoch="start-1")) == 3
    assert moved(before, Look(work=100, epoch="start-1")) == 0
    # restarted since the last check: everything the new process counted is new
    assert moved(before, Look(work=7, epoch="start-2")) == 7
    assert moved(before, Look(work=0, epoch="start-2")) == 0
    # restarted without an epoch (llama-swap's ids start again): it went down
    assert moved(Counter(42, "", 0.0), Look(work=2)) == 2
    # fingerprints (Ollama's expires_at): moved or not, no amount
    assert moved(Counter("m@t1", "", 0.0), Look(work="m@t2")) is True
    assert moved(Counter("m@t1", "", 0.0), Look(work="m@t1")) is False
    # nothing to compare with: the first look is the base
    assert moved(None, Look(work=500)) == 0


def test_a_request_too_small_to_move_the_rounded_count_still_moves_the_fingerprint() -> None:
    # llama-server prints 1.05042e+06: 8 more tokens may leave the count as it was, but its
    # n_decode_total and seconds totals move
    before = Counter(1050420, "start-1", at=0.0, fingerprint="1.05042e+06,2048,12.5")
    assert moved(before, Look(work=1050420, epoch="start-1",
                              fingerprint="1.05042e+06,2049,12.51")) is True
    assert moved(before, Look(work=1050420, epoch="start-1",
                              fingerprint="1.05042e+06,2048,12.5")) is False


@pytest.mark.parametrize(("look", "before", "busy", "reason"), [
    (Look(running=False), None, False, "llama: not running"),
    (Look(loading=True), None, True, "llama: loading its model"),
    (Look(in_flight=1, work=5), None, True, "llama: 1 request in flight"),
    (Look(in_flight=0, work=157, work_unit="tokens"), Counter(100, "", 970.0), True,
     "llama: 57 tokens since the last check, 30s ago"),
    (Look(work="m@t2"), Counter("m@t1", "", 970.0), True, "llama: used since the last check, 30s ago"),
    (Look(in_flight=0, work=100), Counter(100, "", 970.0), False,
     "llama: nothing in flight, nothing since the last check"),
    (Look(in_flight=0, work=100), None, False, "llama: nothing in flight, first look, counting from now"),
    (Look(unloaded="model unloaded (llama-server sleeping)", in_flight=0, work=100),
     Counter(100, "", 970.0), False, "llama: model unloaded (llama-server sleeping)"),
    # work done, then unloaded, all between two checks: the work counts
    (Look(unloaded="no model loaded (ollama)", work="m@t2"), Counter("m@t1", "", 970.0), True,
     "llama: used since the last check, 30s ago"),
    (Look(), None, False, "llama: its requests cannot be seen (no activity endpoint)"),
])
def test_judge(look: Look, before: Counter | None, busy: bool, reason: str) -> None:
    assert judge("llama", look, before, now=1000.0) == (busy, reason)
