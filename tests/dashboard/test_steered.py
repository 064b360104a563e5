"""The stay-awakes the page asked of the GPU boxes (dashboard/steered.py), kept in a file and
read back checked: a time that is no time, or too far ahead, is not shown."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sleepyllama import steer
from sleepyllama.dashboard.steered import Steered


def test_a_stay_awake_is_shown_until_it_is_over(tmp_path: Path) -> None:
    steered = Steered(tmp_path / "steered.json")
    until = time.time() + 3600
    steered.stay("gpu-box", until)
    assert Steered(tmp_path / "steered.json").until("gpu-box") == until  # read back
    assert steered.until("other") is None
    steered.over("gpu-box")
    assert steered.until("gpu-box") is None


def test_one_past_is_not_shown(tmp_path: Path) -> None:
    steered = Steered(tmp_path / "steered.json")
    steered.stay("gpu-box", 1000.0)
    assert steered.until("gpu-box", now=999.0) == 1000.0
    assert steered.until("gpu-box", now=1001.0) is None


@pytest.mark.parametrize("written", [
    '{"gpu-box": NaN}', '{"gpu-box": Infinity}', '{"gpu-box": "soon"}', '{"gpu-box": 1e300}',
    "[1, 2]", "not json", '{"gpu-box": true}'])
def test_what_is_no_stay_awake_is_dropped_not_a_crash(tmp_path: Path, written: str) -> None:
    path = tmp_path / "steered.json"
    path.write_text(written)
    assert Steered(path).until("gpu-box") is None
    Steered(path).stay("other", time.time() + 60)  # and it can be written again
    assert set(json.loads(path.read_text())) == {"other"}


def test_more_than_the_longest_stay_awake_ahead_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "steered.json"
    path.write_text(json.dumps({"gpu-box": 1000.0 + steer.MAX_STAY + 3600}))
    assert Steered(path).until("gpu-box", now=1000.0) is None


def test_without_a_state_directory_nothing_is_kept() -> None:
    steered = Steered(None)
    steered.stay("gpu-box", time.time() + 60)
    assert steered.until("gpu-box") is None
