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


@pytest.mark.parametrize(("kind", "line"), [
    # measured: the real llama-server 0c1e570 (tests/kinds/test_real_llama_server.py runs it)
    ("llama-server", "0.00.356.379 I srv  llama_server: model loaded"),
    ("llama-server", "0.00.356.411 I srv  llama_server: listening on http://127.0.0.1:8080"),
    # from their sources: Ollama's server/routes.go through slog, llama-swap.go, vLLM's
    # api_server.py behind its process prefix, and uvicorn's line after it
    ("ollama", 'time=2025-10-03T13:16:39.335+02:00 level=INFO source=routes.go:1343 '
               'msg="Listening on 127.0.0.1:11434 (version 0.12.3)"'),
    ("llama-swap", "llama-swap listening on http://:8080"),
    ("vllm", "(APIServer pid=460954) INFO 12-18 06:01:05 [api_server.py:1945] Starting vLLM API "
             "server 0 on http://0.0.0.0:8080"),
    ("vllm", "INFO:     Application startup complete."),
])
def test_each_kind_knows_the_line_that_says_it_may_serve(kind: str, line: str) -> None:
    ready_line = kinds.get(kind).ready_line
    assert ready_line is not None and ready_line.search(line)
    # a line of the load before it is not one
    assert not ready_line.search("load_tensors: loading model tensors, this can take a while")
