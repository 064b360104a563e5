"""The registry of kinds: which kind a command runs, and what the proxy asks of a kind it does
not know yet ("auto")."""

from __future__ import annotations

import pytest

from sleepyllama import kinds


@pytest.mark.parametrize(("program", "kind"), [
    ("/opt/llama.cpp/build/bin/llama-server", "llama-server"),
    ("llama-server", "llama-server"),
    ("/usr/local/bin/llama-swap", "llama-swap"),
    ("/usr/bin/ollama", "ollama"),
    ("/opt/vllm/bin/vllm", "vllm"),
    ("/opt/whisper.cpp/build/bin/whisper-server", "none"),
    ("/usr/bin/python3", "none"),
])
def test_detect(program: str, kind: str) -> None:
    assert kinds.detect((program, "--port", "8080")).name == kind


def test_auto_answers_every_kinds_look_only_requests_and_tries_every_ready_check() -> None:
    everything = kinds.look_only("auto")
    for kind in kinds.KINDS.values():
        assert set(kind.look_only) <= set(everything)
    assert kinds.look_only("llama-server") == ("GET /v1/models", "GET /models", "GET /props")
    assert kinds.ready_paths("auto") == ("/health", "/api/version")
    assert kinds.ready_paths("ollama") == ("/api/version",)


def test_fixed_asleep_answers_only_once_the_kind_is_known() -> None:
    assert kinds.asleep_answers("auto", []) == {}
    # /v1/models is every kind's: it tells nothing
    assert kinds.asleep_answers("auto", ["/v1/models"]) == {}
    # /api/tags is Ollama's alone: the backend is an Ollama
    assert "/api/ps" in kinds.asleep_answers("auto", ["/v1/models", "/api/tags"])
    assert "/api/ps" in kinds.asleep_answers("ollama", [])
    assert kinds.asleep_answers("llama-server", ["/api/tags"]) == {}


def test_a_backends_answers_tell_its_kind() -> None:
    assert kinds.identify(["/v1/models", "/api/tags", "/api/version"]) == "ollama"
    assert kinds.identify(["/v1/models", "/models", "/props"]) == "llama-server"
    assert kinds.identify(["/v1/models"]) is None  # every kind answers it
