#!/usr/bin/env python3
"""A stand-in for llama.cpp's llama-server, speaking its HTTP formats.

Like the real one it listens at once but answers 503 {"error": {"message": "Loading model"}}
while a model "loads", then /health 200, /slots, /props and OpenAI-style chat completions,
streamed as server-sent events with chunked transfer encoding. It accepts llama-server's own
command-line flags that matter here (--host, --port, --parallel/-np) and ignores the rest, so a
test can give it a real-looking command line.

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


class State:
    def __init__(self, load_seconds: float, slots: int, tokens: int, token_delay: float) -> None:
        self.ready_at = time.monotonic() + load_seconds
        self.slots = slots
        self.busy = [False] * slots
        self.tokens = tokens
        self.token_delay = token_delay
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
        if self._loading():
            return
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/slots":
            self._json(200, [
                {"id": i, "id_task": -1, "n_ctx": 4096, "speculative": False,
                 "is_processing": busy, "params": {}, "next_token": {"has_next_token": busy}}
                for i, busy in enumerate(self.state.busy)
            ])
        elif self.path == "/props":
            self._json(200, {"total_slots": self.state.slots, "is_sleeping": False,
                             "model_path": "/models/fake.gguf"})
        else:
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self._loading():
            return
        if self.path not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"code": 404, "message": "File Not Found",
                                       "type": "not_found_error"}})
            return
        slot = self._take_slot()
        try:
            if request.get("stream"):
                self._stream()
            else:
                text = " ".join(f"token{i}" for i in range(self.state.tokens))
                self._json(200, {"object": "chat.completion", "model": "fake",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}]})
        finally:
            self._free_slot(slot)

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(self.state.tokens):
            chunk = {"object": "chat.completion.chunk", "model": "fake", "created": int(time.time()),
                     "choices": [{"index": 0, "finish_reason": None,
                                  "delta": {"content": f"token{i} "}}],
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
    parser.add_argument("--ready-file", help="write CLOCK_MONOTONIC here when /health turns 200")
    args, _ignored = parser.parse_known_args(argv)

    state = State(args.load_seconds, args.parallel, args.tokens, args.token_delay)
    Handler.state = state
    family_server = Server
    if ":" in args.host:
        import socket

        class Server6(Server):
            address_family = socket.AF_INET6

        family_server = Server6
    server = family_server((args.host, args.port), Handler)
    if args.ready_file:
        def mark_ready() -> None:
            time.sleep(max(0.0, state.ready_at - time.monotonic()))
            with open(args.ready_file + ".tmp", "w") as file:
                file.write(repr(state.ready_at))
            os.replace(args.ready_file + ".tmp", args.ready_file)

        threading.Thread(target=mark_ready, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"fake llama-server listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
