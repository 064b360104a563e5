"""Ollama's kind, in the formats its docs and source give (tests/data/ollama/)."""

from __future__ import annotations

import json

import pytest

from sleepyllama.kinds.base import Unreadable
from sleepyllama.kinds.ollama import KIND, ps

from conftest import TESTS

DATA = TESTS / "data"


def test_ps() -> None:
    loaded, fingerprint = ps(json.loads((DATA / "ollama/api-ps.json").read_text()))
    assert loaded and fingerprint == "mistral:latest@2024-06-04T14:38:31.83753-07:00"
    assert ps(json.loads((DATA / "ollama/api-ps-nothing-loaded.json").read_text())) == (False, "")
    with pytest.raises(Unreadable):
        ps({"error": "unauthorized"})


def test_ready_check_and_what_only_looks() -> None:
    # no /health in Ollama: 404 "404 page not found"
    assert KIND.health_url(("/usr/bin/ollama", "serve")) == "http://127.0.0.1:11434/api/version"
    assert {"GET /api/tags", "GET /api/version"} <= set(KIND.look_only)
    assert json.loads(KIND.asleep_answers["/api/ps"][1]) == {"models": []}
    # what some clients poll to see that it serves (server/routes.go: c.String)
    assert KIND.asleep_answers["/"] == ("text/plain; charset=utf-8", b"Ollama is running")
