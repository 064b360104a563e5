"""Activity sources: each kind's parser against real output (tests/data/), and the judgement of
a look against the counter the previous idle check stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleepyllama.config import detect_kind
from sleepyllama.host.activity import (
    Counter,
    Look,
    Unreadable,
    judge,
    llama_metrics,
    llama_sleeping,
    llama_slots,
    moved,
    ollama_ps,
    parse_prometheus,
    swap_activity,
    swap_running,
)

DATA = Path(__file__).parent / "data"


def data(path: str) -> str:
    return (DATA / path).read_text()


# -- llama-server, captured from the real one ---------------------------------------------------

def test_llama_metrics_after_one_completion() -> None:
    # 31 prompt tokens + 8 predicted, nothing in flight
    assert llama_metrics(data("llama-server/metrics-after-one-completion.txt")) == (0, 39)


def test_llama_metrics_counts_running_and_deferred_requests() -> None:
    in_flight, _tokens = llama_metrics(data("llama-server/metrics-one-request-in-flight-one-deferred.txt"))
    assert in_flight == 2


def test_llama_metrics_without_the_counters_is_unreadable() -> None:
    text = data("llama-server/metrics-after-one-completion.txt")
    without = "\n".join(line for line in text.splitlines() if "requests_processing" not in line)
    with pytest.raises(Unreadable, match="requests_processing"):
        llama_metrics(without)
    with pytest.raises(Unreadable):
        llama_metrics('{"error": {"code": 501}}')


def test_prometheus_labels_and_comments() -> None:
    text = '# HELP x y\nx_total 3\nper_pos{position="0"} 2.5\n\n'
    assert parse_prometheus(text) == {"x_total": 3.0, "per_pos": 2.5}
    with pytest.raises(Unreadable):
        parse_prometheus("x_total three\n")


def test_llama_props_awake_and_sleeping() -> None:
    assert llama_sleeping(json.loads(data("llama-server/props-sleeping.json"))) is True
    assert llama_sleeping(json.loads(data("llama-server/props-awake.json"))) is False
    with pytest.raises(Unreadable):
        llama_sleeping(["not", "props"])


def test_llama_slots_fallback() -> None:
    idle = llama_slots(json.loads(data("llama-server/slots-after-one-completion.json")))
    busy = llama_slots(json.loads(data("llama-server/slots-one-processing.json")))
    assert idle[0] == 0 and busy[0] == 1
    assert idle[1] != llama_slots([{"id": 0, "is_processing": False},
                                   {"id": 1, "is_processing": False, "id_task": 9}])[1]
    with pytest.raises(Unreadable):
        llama_slots([{"id": 0}])


# -- Ollama and llama-swap, in the formats their docs and source give ----------------------------

def test_ollama_ps() -> None:
    loaded, fingerprint = ollama_ps(json.loads(data("ollama/api-ps.json")))
    assert loaded and fingerprint == "mistral:latest@2024-06-04T14:38:31.83753-07:00"
    assert ollama_ps(json.loads(data("ollama/api-ps-nothing-loaded.json"))) == (False, "")
    with pytest.raises(Unreadable):
        ollama_ps({"error": "unauthorized"})


def test_llama_swap_running_and_activity() -> None:
    assert swap_running(json.loads(data("llama-swap/running.json"))) == (True, False)
    assert swap_running(json.loads(data("llama-swap/running-nothing-loaded.json"))) == (False, False)
    assert swap_running({"running": [{"model": "m", "state": "starting"}]}) == (True, True)
    assert swap_running({"running": [{"model": "m", "state": "stopping"}]}) == (False, False)
    assert swap_activity(json.loads(data("llama-swap/activity.json"))) == 42
    assert swap_activity(json.loads(data("llama-swap/activity-empty.json"))) == 0
    with pytest.raises(Unreadable):
        swap_activity({"data": [{"model": "no id"}]})


@pytest.mark.parametrize(("program", "kind"), [
    ("/opt/llama.cpp/build/bin/llama-server", "llama-server"),
    ("llama-server", "llama-server"),
    ("/usr/local/bin/llama-swap", "llama-swap"),
    ("/usr/bin/ollama", "ollama"),
    ("/opt/whisper.cpp/build/bin/whisper-server", "none"),
    ("/usr/bin/python3", "none"),
])
def test_detect_kind(program: str, kind: str) -> None:
    assert detect_kind((program, "--port", "8080")) == kind


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
