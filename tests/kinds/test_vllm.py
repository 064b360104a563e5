"""vLLM's kind: /metrics in prometheus_client's format as vLLM's source registers it (each series
labelled by model_name and engine; tests/data/vllm/)."""

from __future__ import annotations

import pytest

from sleepyllama.kinds.base import Unreadable
from sleepyllama.kinds.vllm import KIND, metrics

from conftest import TESTS

DATA = TESTS / "data"


def test_metrics() -> None:
    text = (DATA / "vllm/metrics-one-running.txt").read_text()
    in_flight, tokens, fingerprint = metrics(text)
    assert (in_flight, tokens) == (1, 1234 + 5678)
    assert "vllm:request_success_total=12" in fingerprint  # summed over finished_reason
    with pytest.raises(Unreadable, match="num_requests_waiting"):
        metrics("\n".join(line for line in text.splitlines() if "waiting" not in line))


def test_recognised_by_its_program_or_module() -> None:
    assert KIND.recognises(("/opt/vllm/bin/vllm", "serve", "Qwen/Qwen3-8B"))
    assert KIND.recognises(("python3", "-m", "vllm.entrypoints.openai.api_server"))
    assert not KIND.recognises(("llama-server",))
    assert KIND.health_url(("vllm", "serve", "m")) == "http://127.0.0.1:8000/health"
    assert KIND.api_key(("vllm", "serve", "m", "--api-key", "k")) == "k"
