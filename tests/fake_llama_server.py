#!/usr/bin/env python3
"""A stand-in for llama.cpp's llama-server, speaking its HTTP formats.

Like the real one it listens at once but answers 503 {"error": {"message": "Loading model"}}
while a model "loads", then /health 200, /slots, /props, /metrics (501 without --metrics, as
the real one; its format and counters as captured from it in tests/data/llama-server/) and
OpenAI-style chat completions, streamed as server-sent events with chunked transfer encoding. It
accepts llama-server's own command-line flags that matter here (--host, --port, --parallel/-np,
--metrics) and ignores the rest, so a test can give it a real-looking command line. The real
llama-server is tested too (tests/kinds/test_real_llama_server.py); this one is for what the real one
cannot do on demand: a loading phase of chosen length, slow tokens.

--ready-file records CLOCK_MONOTONIC (shared by all processes on the machine) at the moment
/health turns 200, so a test or benchmark can measure the lag to a client's first byte.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# the real llama-server's answer (--alias tiny), captured
MODELS = Path(__file__).resolve().parent / "data" / "llama-server" / "v1-models.json"


class State:
    def __init__(self, load_seconds: float, slots: int, tokens: int, token_delay: float,
                 metrics: bool, reply: str = "") -> None:
        self.ready_at = time.monotonic() + load_seconds
        self.slots = slots
        self.busy = [False] * slots
        self.id_task = [-1] * slots
        self.words = reply.split() or [f"token{i}" for i in range(tokens)]
        self.tokens = len(self.words)
        self.token_delay = token_delay
        self.metrics = metrics
        self.started = str(int(time.time()))
        self.prompt_tokens = self.predicted_tokens = self.next_task = 0
        self.requests: dict[str, int] = {}  # GET path -> how often: GET /fake/requests shows it
        self.lock = threading.Lock()

    @property
    def loading(self) -> bool:
        return time.monotonic() < self.ready_at


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests read stdout for other things

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _loading(self) -> bool:
        if self.state.loading:
            self._json(503, {"error": {"code": 503, "message": "Loading model",
                                       "type": "unavailable_error"}})
            return True
        return False

    def do_GET(self) -> None:
        if self.path == "/fake/requests":
            self._json(200, self.state.requests)
            return
        with self.state.lock:
            self.state.requests[self.path] = self.state.requests.get(self.path, 0) + 1
        if self._loading():
            return
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/slots":
            self._json(200, [
                {"id": i, "id_task": self.state.id_task[i], "n_ctx": 4096, "speculative": False,
                 "is_processing": busy, "params": {}, "next_token": {"has_next_token": busy}}
                for i, busy in enumerate(self.state.busy)
            ])
        elif self.path == "/metrics":
            self._metrics()
        elif self.path in ("/v1/models", "/models") and MODELS.exists():  # copied alone: none
            self._json(200, json.loads(MODELS.read_text()))
        elif self.path == "/props":
            self._json(200, {"total_slots": self.state.slots, "is_sleeping": False,
                             "model_path": "/models/fake.gguf"})
        else:
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})

    def _metrics(self) -> None:
        if not self.state.metrics:
            self._json(501, {"error": {"code": 501, "message": "This server does not support "
                                       "metrics endpoint. Start it with `--metrics`",
                                       "type": "not_supported_error"}})
            return
        with self.state.lock:
            values = {"prompt_tokens_total": self.state.prompt_tokens,
                      "prompt_tokens_cached_total": 0,
                      "tokens_predicted_total": self.state.predicted_tokens,
                      "requests_processing": sum(self.state.busy), "requests_deferred": 0}
        text = "".join(f"# HELP llamacpp:{name} -\n# TYPE llamacpp:{name} "
                       f"{'gauge' if name.startswith('requests') else 'counter'}\n"
                       f"llamacpp:{name} {value}\n" for name, value in values.items())
        data = text.encode()
        self.send_response(200)
        self.send_header("Process-Start-Time-Unix", self.state.started)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self._loading():
            return
        # routed by path, as llama-server's cpp-httplib does: a query string changes nothing
        if self.path.split("?", 1)[0] not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})
            return
        if request.get("model") == "no-such-model":  # as llama-server answers a bad request
            self._json(400, {"error": {"code": 400, "message": "model 'no-such-model' not found",
                                       "type": "invalid_request_error"}})
            return
        slot = self._take_slot()
        with self.state.lock:
            self.state.prompt_tokens += 10
        try:
            if request.get("stream"):
                self._stream()
            else:
                text = " ".join(self.state.words)
                self._json(200, {"object": "chat.completion", "model": "fake",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})
        finally:
            with self.state.lock:
                self.state.predicted_tokens += self.state.tokens
            self._free_slot(slot)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for word in self.state.words:
            chunk = {"object": "chat.completion.chunk", "model": "fake", "created": int(time.time()),
                     "choices": [{"index": 0, "finish_reason": None,
                                  "delta": {"content": f"{word} "}}],
                     "produced_at": time.monotonic()}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            time.sleep(self.state.token_delay)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _take_slot(self) -> int | None:
        with self.state.lock:
            for i, busy in enumerate(self.state.busy):
                if not busy:
                    self.state.busy[i] = True
                    self.state.id_task[i] = self.state.next_task
                    self.state.next_task += 1
                    return i
        return None

    def _free_slot(self, slot: int | None) -> None:
        if slot is not None:
            with self.state.lock:
                self.state.busy[slot] = False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of held clients arrive at once after a wake
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-np", "--parallel", type=int, default=4, help="slots")
    parser.add_argument("--load-seconds", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--reply", default="", help="the words to answer (else token0 token1 ...)")
    parser.add_argument("--ready-file", help="write CLOCK_MONOTONIC here when /health turns 200")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics (else 501)")
    parser.add_argument("-m", "--model", help="a model file; missing: fail as llama-server does")
    parser.add_argument("--print-file", help="print this file's lines first, as the real one "
                        "prints its GPU lines (tests/data/llama-server/output-*.txt)")
    args, _ignored = parser.parse_known_args(argv)

    if args.model and not os.path.exists(args.model):
        # what the real one prints (tests/data/llama-server/output-missing-model.txt), and its exit
        print(f"0.00.012.724 E gguf_init_from_file: failed to open GGUF file '{args.model}' "
              f"(No such file or directory)\n0.00.013.175 E srv  llama_server: exiting due to "
              "model loading error", file=sys.stderr, flush=True)
        return 1
    if args.print_file:
        with open(args.print_file) as lines:
            print(lines.read(), end="", file=sys.stderr, flush=True)
    state = State(args.load_seconds, args.parallel, args.tokens, args.token_delay, args.metrics,
                  args.reply)
    Handler.state = state
    family_server = Server
    if ":" in args.host:
        import socket

        class Server6(Server):
            address_family = socket.AF_INET6

        family_server = Server6
    server = family_server((args.host, args.port), Handler)
    # it answers once it listens: a load of 0 s turns ready now, not before the bind
    state.ready_at = max(state.ready_at, time.monotonic())

    def mark_ready() -> None:
        """When /health turns 200: the real one's line (0c1e570 prints it once its model is
        loaded), and the moment, for the tests that measure what follows."""
        time.sleep(max(0.0, state.ready_at - time.monotonic()))
        print(f"0.00.356.411 I srv  llama_server: listening on http://{args.host}:{args.port}",
              file=sys.stderr, flush=True)
        if args.ready_file:
            with open(args.ready_file + ".tmp", "w") as file:
                file.write(repr(state.ready_at))
            os.replace(args.ready_file + ".tmp", args.ready_file)

    threading.Thread(target=mark_ready, daemon=True).start()
    return serve(server, f"fake llama-server listening on {args.host}:{args.port}")


def serve(server: ThreadingHTTPServer, listening: str) -> int:
    """Serve until SIGTERM; the line a test waits for goes out first. (fake_servers.py too.)
    The handler raises nothing: a SIGTERM that came while a finalizer ran had its SystemExit
    dropped, and the server served on (a CI run's supervisor test waited 30 s for it)."""
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown,
                                                              daemon=True).start())
    print(listening, flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
