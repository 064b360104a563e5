#!/usr/bin/env python3
"""Stand-ins for the servers that cannot be built here, each answering as its docs and source say:

  ollama      docs/api.md: no /health (404 "404 page not found", text/plain); GET / "Ollama is
              running"; /api/version, /api/tags, /api/ps (a model loads on its first request and
              its expires_at moves as each request ends); OpenAI-compatible /v1/models and
              /v1/chat/completions
  vllm        vllm/entrypoints/openai/api_server.py: /health 200 with an empty body once it
              listens; /v1/models; /metrics (prometheus_client, labelled by model_name and
              engine); FastAPI's 404 {"detail":"Not Found"}
  llama-swap  internal/server: /health "OK"; /v1/models with status.value; /running;
              /api/metrics/activity; Go's 404 "404 page not found"

Same options as fake_llama_server.py where they apply, so SleepingBackend can start either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_llama_server import serve

MODEL = {"ollama": "llama3.2:latest", "vllm": "Qwen/Qwen3-8B", "llama-swap": "qwen"}


class State:
    def __init__(self, kind: str) -> None:
        self.kind, self.lock = kind, threading.Lock()
        self.requests, self.tokens, self.running = 0, 0, 0
        self.loaded_until: str | None = None  # Ollama's expires_at, once a model is loaded


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8")

    def _not_found(self) -> None:
        if self.state.kind == "vllm":
            self._json(404, {"detail": "Not Found"})
        else:
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        kind, model, path = self.state.kind, MODEL[self.state.kind], self.path.split("?")[0]
        models = {"object": "list", "data": [{"id": model, "object": "model",
                                              "created": 1764600000, "owned_by": {
                                                  "ollama": "library", "vllm": "vllm",
                                                  "llama-swap": "llama-swap"}[kind]}]}
        if kind == "llama-swap":
            models["data"][0]["status"] = {"value": "loaded" if self.state.requests else "unloaded"}
        routes = {
            "ollama": {
                "/": lambda: self._send(200, b"Ollama is running", "text/plain; charset=utf-8"),
                "/api/version": lambda: self._json(200, {"version": "0.12.3"}),
                "/api/tags": lambda: self._json(200, {"models": [{
                    "name": model, "model": model, "modified_at": "2025-11-01T10:00:00Z",
                    "size": 2019393189, "digest": "a80c4f17acd5", "details": {
                        "format": "gguf", "family": "llama", "parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M"}}]}),
                "/api/ps": lambda: self._json(200, {"models": [] if self.state.loaded_until is None
                                                    else [{"name": model, "model": model,
                                                           "expires_at": self.state.loaded_until,
                                                           "size_vram": 2019393189}]}),
                "/v1/models": lambda: self._json(200, models),
            },
            "vllm": {
                "/health": lambda: self._send(200, b"", "application/json"),
                "/v1/models": lambda: self._json(200, models),
                "/metrics": self._vllm_metrics,
            },
            "llama-swap": {
                "/health": lambda: self._send(200, b"OK", "text/plain; charset=utf-8"),
                "/v1/models": lambda: self._json(200, models),
                "/models": lambda: self._json(200, models),
                "/running": lambda: self._json(200, {"running": [
                    {"model": model, "state": "ready"}] if self.state.requests else []}),
                "/api/metrics/activity": lambda: self._json(200, {"data": [
                    {"id": self.state.requests}] if self.state.requests else []}),
            },
        }[kind]
        routes.get(path, self._not_found)()

    def _vllm_metrics(self) -> None:
        labels = f'{{engine="0",model_name="{MODEL["vllm"]}"}}'
        series = (("num_requests_running", "gauge", self.state.running),
                  ("num_requests_waiting", "gauge", 0),
                  ("prompt_tokens_total", "counter", self.state.tokens),
                  ("generation_tokens_total", "counter", self.state.tokens))
        text = "".join(f"# TYPE vllm:{name} {kind}\nvllm:{name}{labels} {value:.1f}\n"
                       for name, kind, value in series)
        self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        if path not in ("/v1/chat/completions", "/api/chat"):
            self._not_found()
            return
        with self.state.lock:
            self.state.running += 1
        request = json.loads(body or b"{}")
        with self.state.lock:
            self.state.running -= 1
            self.state.requests += 1
            self.state.tokens += 8
            self.state.loaded_until = f"2025-11-01T10:{self.state.requests:02d}:00Z"
        model = request.get("model") or MODEL[self.state.kind]
        if path == "/api/chat" and request.get("stream", True):
            # streamed unless "stream": false (api/types.go): JSON lines, chunked, the last one
            # "done" with an empty message (server/routes.go streamResponse)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for content, done in (("hi", False), (" there", False), ("", True)):
                line = json.dumps({"model": model, "created_at": "2025-11-01T10:00:00Z",
                                   "message": {"role": "assistant", "content": content},
                                   "done": done, **({"done_reason": "stop"} if done else {})})
                data = (line + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/api/chat":
            self._json(200, {"model": model, "created_at": "2025-11-01T10:00:00Z",
                             "message": {"role": "assistant", "content": "hi there"},
                             "done": True, "done_reason": "stop"})
            return
        self._json(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 1764600000,
                         "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi there"}}],
                         "usage": {"prompt_tokens": 4, "completion_tokens": 4,
                                   "total_tokens": 8}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(MODEL), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", help="write CLOCK_MONOTONIC here once it serves")
    args, _ignored = parser.parse_known_args(argv)
    Handler.state = State(args.kind)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as file:
            file.write(repr(time.monotonic()))
        os.replace(args.ready_file + ".tmp", args.ready_file)
    return serve(server, f"fake {args.kind} listening on {args.host}:{args.port}")


if __name__ == "__main__":
    sys.exit(main())
