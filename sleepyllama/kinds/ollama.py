"""Ollama (`ollama serve`): no /health (404 "404 page not found"); GET / says "Ollama is running"
and /api/version answers once it serves; a model loads on its first request.

  in flight      cannot tell (a request shows when it ends, or through the GPU signal)
  work counter   /api/ps: each loaded model's expires_at, set anew as each request ends
  unloaded       /api/ps: no model loaded
Open WebUI's Ollama connection asks /api/tags and /api/version on each page load; /api/ps says
"nothing loaded" whenever the box sleeps, which is true then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from sleepyllama.kinds.base import GpuLine, HttpSource, Kind, Look, Source, Unreadable, llama_cpp_gpu_line


def ps(answer: object) -> tuple[bool, str]:
    """(a model is loaded, fingerprint) from /api/ps."""
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list) or not all(isinstance(model, dict) for model in models):
        raise Unreadable("/api/ps has no list of models")
    loaded = sorted(f"{model.get('name')}@{model.get('expires_at')}" for model in models)
    return bool(loaded), ";".join(loaded)


class OllamaSource(HttpSource):
    kind = "ollama"

    def read(self) -> Look:
        loaded, fingerprint = ps(self.json(self.get("/api/ps"), "/api/ps"))
        return Look(unloaded="" if loaded else "no model loaded (ollama)", work=fingerprint)


class Ollama(Kind):
    name = "ollama"
    programs = ("ollama",)
    default_port = 11434
    ready_path = "/api/version"
    listens_within = 30.0  # ollama serve listens at once; models load per request
    # server/routes.go Serve: slog.Info(fmt.Sprintf("Listening on %s (version %s)", ...))
    ready_line = re.compile(r"Listening on \S+ \(version ")
    # GET / ("Ollama is running"): what some clients poll to see that it serves
    look_only = ("GET /api/tags", "GET /api/version", "GET /v1/models", "GET /api/ps", "GET /")
    shows = "requests counted from /api/ps (each model's expires_at), loaded models from it too"
    # as server/routes.go answers them (gin: c.JSON, c.String)
    asleep_answers: ClassVar[Mapping[str, tuple[str, bytes]]] = {
        "/api/ps": ("application/json; charset=utf-8", b'{"models":[]}'),
        "/": ("text/plain; charset=utf-8", b"Ollama is running"),
    }
    cannot_show = "a request still in flight shows only when it ends (or through the GPU signal)"

    def gpu_line(self, line: str) -> GpuLine | None:
        # its discovery line at start, and its runners' llama.cpp lines at each load
        return llama_cpp_gpu_line(line)

    def listen(self, command: Sequence[str],
               environment: Mapping[str, str] | None = None) -> tuple[str, str]:
        """Ollama takes its address from OLLAMA_HOST in its environment (the unit's), not its
        command: 127.0.0.1:11434 without it."""
        return ollama_host((environment or {}).get("OLLAMA_HOST", ""))

    def listen_everywhere(self, port: str) -> str | None:
        return (f"set OLLAMA_HOST=0.0.0.0:{port} in its unit's environment (install.sh does: "
                "Environment= in a drop-in, sudo systemctl edit sleepyllama-server@NAME)")

    def source(self, base_url: str, command: Sequence[str], timeout: float = 5.0,
               gentle: bool = False) -> Source:
        return OllamaSource(base_url, None, timeout)


def ollama_host(value: str) -> tuple[str, str]:
    """(host, port) Ollama listens on for this OLLAMA_HOST, as its envconfig.Host() reads it:
    quotes and a scheme dropped, 127.0.0.1 and 11434 where not given ("" host: every address)."""
    text = value.strip().strip("\"'")
    scheme, separator, hostport = text.partition("://")
    default_port = {"http": "80", "https": "443"}.get(scheme, "11434") if separator else "11434"
    if not separator:
        hostport = text
    hostport = hostport.split("/", 1)[0]
    host, colon, port = hostport.rpartition(":")
    if colon and (not host.startswith("[") or host.endswith("]")) and (
            "]" in host or ":" not in host):
        host = host.strip("[]") or "0.0.0.0"  # ":11434": every address, as Go's net.Listen
    else:  # no port: Go's SplitHostPort fails, and all of it is the host
        host, port = (hostport.strip("[]") or "127.0.0.1"), default_port
    if not port.isdigit() or int(port) > 65535:
        port = default_port
    return host, port


KIND = Ollama()
