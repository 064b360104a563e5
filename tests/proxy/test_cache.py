"""The proxy's kept answers (proxy/cache.py): fetched from the backend, and every way a fetch can
fail caught in one line (found on a LAN: a box that went to sleep mid-body raised urllib3's own
error from the body read, uncaught, and the cache was never filled)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from sleepyllama.proxy.cache import AnswerCache


def backend_that_dies_mid_body(hits: list[str]) -> tuple[socket.socket, int]:
    """Answers every request with a head promising 1000 bytes, sends 10, and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                hits.append(conn.recv(65536).split(b" ", 2)[1].decode())
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n{\"data\": [")

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_a_body_cut_short_is_one_line_and_the_next_target_is_still_fetched(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    hits: list[str] = []
    listener, port = backend_that_dies_mid_body(hits)
    try:
        cache = AnswerCache(f"http://127.0.0.1:{port}", ("GET /v1/models", "GET /props"),
                      tmp_path / "answers.json")
        cache.fetch()  # raised urllib3's ProtocolError from the body read before
    finally:
        listener.close()
    assert hits == ["/v1/models", "/props"]
    assert cache.entries == {}
    failed = [r.getMessage() for r in caplog.records if "cache: GET" in r.getMessage()]
    assert len(failed) == 2 and all("\n" not in line for line in failed), failed


def test_a_kept_answer_with_a_header_breaking_type_is_dropped_on_load(tmp_path: Path) -> None:
    """Found by an adversarial trial (issue 20): a content_type holding CR LF, read back from
    the file, made every answer from it an empty close with a traceback (h11 refuses it)."""
    import base64
    import json

    body = base64.b64encode(b'{"data": []}').decode()
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({"entries": {
        "/v1/models": {"status": 200, "content_type": "application/json\r\nX-Evil: 1",
                       "body": body, "fetched_at": 1795600000.0},
        "/props": {"status": 200, "content_type": "application/json", "body": body,
                   "fetched_at": 1795600000.0}}}))
    cache = AnswerCache("http://127.0.0.1:1", ("GET /v1/models", "GET /props"), path)
    assert list(cache.entries) == ["/props"]


def test_a_server_swapped_on_the_port_is_learned_and_a_404_is_asked_once_a_minute(
        tmp_path: Path) -> None:
    """kind = "auto": a llama-server replaced by Ollama on the same port kept the llama-server's
    /props for good, and every target that answered 404 was fetched again at each ready (10
    fetches of each in 30 s while chats kept the box awake)."""
    import subprocess
    import sys
    import time

    from sleepyllama import kinds
    from sleepyllama.proxy.cache import REFRESH, Entry

    from conftest import FAKE_SERVERS, free_port, wait_for

    port = free_port()
    cache = AnswerCache(f"http://127.0.0.1:{port}", tuple(kinds.look_only("auto")),
                        tmp_path / "answers.json")
    cache.entries["/props"] = Entry(200, "application/json", b'{"total_slots": 1}', time.time())
    cache.entries["/v1/models"] = Entry(200, "application/json", b'{"data": []}', time.time())
    assert kinds.identify(cache.entries) == "llama-server"
    ollama = subprocess.Popen([sys.executable, str(FAKE_SERVERS), "--kind", "ollama", "--port",
                               str(port)], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "listening" in (ollama.stdout.readline() or ""), what="the fake Ollama")
        cache.fetch()
    finally:
        ollama.terminate()
        ollama.wait()
    assert "/props" not in cache.entries and "/api/tags" in cache.entries
    assert cache.learned == "ollama" and "/api/ps" in cache.fixed()
    now = time.time()
    assert not cache.stale(now)  # /models and /props answered 404: not asked again at once
    assert cache.stale(now + REFRESH + 1)
