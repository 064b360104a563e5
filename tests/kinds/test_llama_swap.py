"""llama-swap's kind, in the formats its source gives (tests/data/llama-swap/)."""

from __future__ import annotations

import json

import pytest

from sleepyllama.kinds.base import Unreadable
from sleepyllama.kinds.llama_swap import KIND, activity, running

from conftest import TESTS

DATA = TESTS / "data"


def data(path: str) -> object:
    return json.loads((DATA / path).read_text())


def test_running_and_activity() -> None:
    assert running(data("llama-swap/running.json")) == (True, False)
    assert running(data("llama-swap/running-nothing-loaded.json")) == (False, False)
    assert running({"running": [{"model": "m", "state": "starting"}]}) == (True, True)
    assert running({"running": [{"model": "m", "state": "stopping"}]}) == (False, False)
    assert activity(data("llama-swap/activity.json")) == 42
    assert activity(data("llama-swap/activity-empty.json")) == 0
    with pytest.raises(Unreadable):
        activity({"data": [{"model": "no id"}]})
    with pytest.raises(Unreadable):
        activity({"data": [{"id": True}]})


def test_listen_address_from_the_command() -> None:
    assert KIND.health_url(("llama-swap", "--config", "c.yaml")) == "http://127.0.0.1:8080/health"
    assert KIND.health_url(("llama-swap", "--listen", "0.0.0.0:9292")) == (
        "http://127.0.0.1:9292/health")
    assert KIND.health_url(("llama-swap", "--listen", "[::1]:9292")) == "http://[::1]:9292/health"
