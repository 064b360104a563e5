"""The live state as it crosses from the proxy to the page (sleepyllama/live_state.py): what one
writes, the other reads back the same; what is garbled is dropped; the page needs no proxy code."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from sleepyllama import live_state
from sleepyllama.live_state import LiveState, Prewakes

WRITTEN = LiveState(name="llama", backend="10.0.0.5:8080", listen=("0.0.0.0:3939",), pid=42,
                    running=True, state="waking", since=1_800_000_000, waking_since=1_800_000_010,
                    signals=3, clients_waiting=2, typical_wake=8.5, asleep_as="poweroff",
                    last_ready=1_799_999_000,
                    prewakes=Prewakes("learned", 1_800_030_000, "learned: weekdays about 08:25",
                                      ("weekdays about 08:25",)))


def test_what_the_proxy_writes_the_page_reads_back_the_same() -> None:
    document = json.loads(json.dumps(WRITTEN.to_json()))  # as the file holds it
    assert document["version"] == live_state.VERSION
    assert live_state.read(document) == (WRITTEN, "")
    without = LiveState("llama", "10.0.0.5:8080", (), 1, False, "asleep", None)
    assert "prewake" not in without.to_json()  # an older reader sees the shape it knows
    assert live_state.read(json.loads(json.dumps(without.to_json()))) == (without, "")


@pytest.mark.parametrize("document, says", [
    ({**WRITTEN.to_json(), "version": 2}, "unknown shape"),
    ([], "unknown shape"),
    ({**WRITTEN.to_json(), "state": "exploded"}, "its live state says 'exploded'"),
])
def test_another_shape_or_an_unknown_state_says_why(document: object, says: str) -> None:
    read, wrong = live_state.read(document)
    assert says in wrong
    assert read is None or read.state == "unknown"


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, 1e300, True, "9", None])
def test_a_number_out_of_range_reads_as_absent(value: object) -> None:
    read, _ = live_state.read({**WRITTEN.to_json(), "since": value, "signals": value,
                               "typical_wake": value, "prewake": {"mode": "learned",
                                                                  "next": value}})
    assert read is not None
    assert (read.since, read.signals, read.typical_wake, read.prewakes.next) == (None, 0, None, None)


def test_the_page_imports_no_proxy_code() -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import sys, sleepyllama.dashboard.program; "
         "print(sorted(m for m in sys.modules if m.startswith('sleepyllama.proxy')))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
