"""vLLM's OpenAI-compatible server (`vllm serve MODEL`, or python -m
vllm.entrypoints.openai.api_server): it listens only once its model is loaded; /health is 200
then. /metrics (public, prometheus_client's text format, each series labelled by model_name and
engine) holds the scheduler's gauges and the token counters, printed at full precision.

  in flight      vllm:num_requests_running + vllm:num_requests_waiting
  work counter   vllm:prompt_tokens_total + vllm:generation_tokens_total
  unloaded       cannot tell (the model stays loaded while vLLM runs)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sleepyllama.kinds.base import (
    HttpSource,
    Kind,
    Look,
    Source,
    Unreadable,
    flag_value,
    totals,
)


def metrics(text: str) -> tuple[int, int, str]:
    """(requests running and waiting, tokens so far, fingerprint of every counter)."""
    return totals(text, "vllm:", ("num_requests_running", "num_requests_waiting"),
                  ("prompt_tokens_total", "generation_tokens_total"))


class VllmSource(HttpSource):
    kind = "vllm"

    def read(self) -> Look:
        answer = self.get("/metrics")
        if answer.status != 200:
            raise Unreadable(f"/metrics answered HTTP {answer.status}")
        in_flight, tokens, fingerprint = metrics(answer.text)
        return Look(in_flight=in_flight, work=tokens, work_unit="tokens", fingerprint=fingerprint)


class Vllm(Kind):
    name = "vllm"
    # it loads the model before it listens: refused for as long as a load takes
    listens_within = 900.0
    programs = ("vllm",)
    default_host = "0.0.0.0"
    default_port = 8000
    look_only = ("GET /v1/models",)
    shows = "requests in flight and tokens counted from /metrics"
    # vllm/entrypoints/openai/api_server.py: "Starting vLLM API server [N ]on http://...", then
    # uvicorn's "Application startup complete."
    ready_line = re.compile(r"Starting vLLM API server .*on https?://|Application startup complete")

    def recognises(self, command: Sequence[str]) -> bool:
        return super().recognises(command) or any(
            argument.startswith("vllm.entrypoints") for argument in command)

    def api_key(self, command: Sequence[str]) -> str | None:
        return flag_value(command, "--api-key")

    def listen_everywhere(self, port: str) -> str | None:
        return "give vLLM --host 0.0.0.0 (its default, unless --host says otherwise)"

    def needs_key(self, method: str, path: str) -> bool | None:
        # its AuthenticationMiddleware (entrypoints/openai): OPTIONS and paths outside /v1 pass
        return method != "OPTIONS" and (path == "/v1" or path.startswith("/v1/"))

    def source(self, base_url: str, command: Sequence[str], timeout: float = 5.0,
               gentle: bool = False) -> Source:
        return VllmSource(base_url, self.api_key(command), timeout)


KIND = Vllm()
