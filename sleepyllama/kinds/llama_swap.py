"""llama-swap: starts and stops llama-server (and others) on demand behind one port.

  in flight      cannot tell (a request counts when it ends, or through the GPU signal)
  work counter   /api/metrics/activity?limit=1: the newest request's id, one more per request
  unloaded       /running: no model ready or starting
Formats from llama-swap's source (internal/server/api.go runningModel, internal/store ActivityPage).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sleepyllama.kinds.base import HttpSource, Kind, Look, Source, Unreadable, flag_value


def running(answer: object) -> tuple[bool, bool]:
    """(a model is loaded or loading, one is starting) from /running."""
    models = answer.get("running") if isinstance(answer, dict) else None
    if not isinstance(models, list) or not all(isinstance(model, dict) for model in models):
        raise Unreadable("/running has no list of models")
    states = [model.get("state") for model in models]
    return any(state in ("ready", "starting") for state in states), "starting" in states


def activity(answer: object) -> int:
    """The newest request's id from /api/metrics/activity (newest first)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise Unreadable("/api/metrics/activity has no data list")
    if not data:
        return 0
    newest = data[0].get("id") if isinstance(data[0], dict) else None
    if not isinstance(newest, int) or isinstance(newest, bool):
        raise Unreadable("/api/metrics/activity: an entry without an id")
    return newest


class LlamaSwapSource(HttpSource):
    kind = "llama-swap"

    def read(self) -> Look:
        loaded, starting = running(self.json(self.get("/running"), "/running"))
        if starting:
            return Look(loading=True)
        newest = activity(self.json(self.get("/api/metrics/activity?limit=1"),
                                    "/api/metrics/activity"))
        return Look(unloaded="" if loaded else "no model running (llama-swap)", work=newest)


class LlamaSwap(Kind):
    name = "llama-swap"
    listens_within = 30.0  # it listens at once, and starts each model on its first request
    programs = ("llama-swap",)
    look_only = ("GET /v1/models", "GET /models")
    shows = "requests counted from /api/metrics/activity, running models from /running"
    cannot_show = "a request still in flight shows only when it ends (or through the GPU signal)"
    # llama-swap.go: proxyLog.Infof("llama-swap listening on http://%s", listenAddr)
    ready_line = re.compile(r"llama-swap listening (with TLS )?on https?://")

    def listen(self, command: Sequence[str],
               environment: Mapping[str, str] | None = None) -> tuple[str, str]:
        host, _, port = (flag_value(command, "--listen") or ":8080").rpartition(":")
        return host.strip("[]") or "127.0.0.1", port or "8080"

    def listen_everywhere(self, port: str) -> str | None:
        return f"give llama-swap --listen 0.0.0.0:{port}"

    def source(self, base_url: str, command: Sequence[str], timeout: float = 5.0,
               gentle: bool = False) -> Source:
        return LlamaSwapSource(base_url, None, timeout)


KIND = LlamaSwap()
