"""bench/prewake_replay.py, the harness: a replay must count what a user would see, and a
user's trace file must be read or refused by its line."""

from __future__ import annotations

import importlib.util
import random
import sys

import pytest

from conftest import TESTS

BENCH = TESTS.parent / "bench" / "prewake_replay.py"


@pytest.fixture()
def bench(monkeypatch, utc):
    spec = importlib.util.spec_from_file_location("prewake_replay", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_without_pre_wakes_every_first_use_waits_a_whole_wake(bench) -> None:
    requests = bench.office(random.Random(0))
    off, _ = bench.replay(requests, 3600.0, 30.0, prewakes=False)
    assert off.first_uses > 0 and off.ready == 0
    assert off.waited == pytest.approx(30.0 * off.first_uses)


def test_learned_pre_wakes_make_the_box_ready_for_a_regular_habit(bench) -> None:
    requests = bench.office(random.Random(0))
    on, firsts = bench.replay(requests, 3600.0, 30.0, prewakes=True)
    off, _ = bench.replay(requests, 3600.0, 30.0, prewakes=False)
    assert on.first_uses == off.first_uses
    assert on.ready / on.first_uses >= 0.7
    assert off.awake < on.awake <= off.awake * 1.1
    # nothing is known on the first day: its first use waits
    assert firsts[0][1] is False


def test_a_trace_file_takes_epoch_seconds_and_iso_8601_and_names_a_bad_line(bench,
                                                                            tmp_path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("# mine\n1767600000\n2026-01-05T08:31:00\n\n")
    assert bench.read_trace(trace) == [1767600000.0, 1767601860.0]
    trace.write_text("1767600000\nyesterday\n")
    with pytest.raises(SystemExit, match=r"trace.txt:2: not epoch seconds or ISO 8601"):
        bench.read_trace(trace)
