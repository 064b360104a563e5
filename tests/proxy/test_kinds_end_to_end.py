"""A newcomer's proxy table (backend and mac, nothing else) in front of each kind of server:
the box wakes for a chat and the chat is answered, and what a frontend asks on page load is
answered from the cache without a magic packet. Ollama, vLLM and llama-swap are fakes that answer
as their docs and source say (tests/fake_servers.py); llama-server: test_reception.py."""

from __future__ import annotations

import json

import pytest

from sleepyllama import kinds

from conftest import http_request, require
from proxy.test_reception import Asleep, status


@pytest.fixture(autouse=True)
def socket_activate() -> None:
    require("systemd-socket-activate")


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n".encode()


def post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data


CHAT = {"ollama": "/api/chat", "vllm": "/v1/chat/completions",
        "llama-swap": "/v1/chat/completions"}


@pytest.mark.parametrize("kind", sorted(CHAT))
def test_a_newcomers_table_sleeps_and_wakes_every_kind(kind: str, tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup, kind=kind)
    for request in kinds.get(kind).look_only:
        answer = http_request(asleep.proxy.address, get(request.split(" ", 1)[1]))
        assert status(answer) == 200, (request, answer[:300])
        assert b"x-sleepyllama: from-cache" in answer.lower(), (request, answer[:300])
    assert asleep.new_packets() == 0, "a page load woke the box"
    answer = http_request(asleep.proxy.address, post(CHAT[kind], {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}))
    assert status(answer) == 200, answer[:300]
    assert b"hi there" in answer
    assert asleep.new_packets() >= 1
    assert "ready after" in asleep.proxy.log()
    stored = json.loads((tmp_path / "state" / "llama.answers.json").read_text())
    assert stored["kind"] == {"ollama": "ollama"}.get(kind)  # told apart by its answers


def test_ollamas_loaded_models_while_asleep_are_none(tmp_path, cleanup) -> None:
    """Open WebUI's Ollama connection: /api/tags and /api/version from the cache, and /api/ps
    "nothing loaded", which is true while the box sleeps."""
    asleep = Asleep(tmp_path, cleanup, kind="ollama")
    answer = http_request(asleep.proxy.address, get("/api/ps"))
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"models": []}
    tags = json.loads(http_request(asleep.proxy.address, get("/api/tags")).split(b"\r\n\r\n", 1)[1])
    assert tags["models"][0]["name"] == "llama3.2:latest"
    # what some clients poll to see that it serves, as Ollama answers it
    head, body = http_request(asleep.proxy.address, get("/")).split(b"\r\n\r\n", 1)
    assert body == b"Ollama is running" and b"Content-Type: text/plain; charset=utf-8" in head
    assert asleep.new_packets() == 0


def test_open_webuis_ollama_connection_sees_the_wake_in_its_thinking(tmp_path, cleanup) -> None:
    """Ollama's /api/chat streams by default, as JSON lines: the wake's progress comes as
    message.thinking (what Open WebUI's Ollama connection shows as reasoning), then Ollama's own
    lines; "stream": false is held and answered as before."""
    import requests

    asleep = Asleep(tmp_path, cleanup, kind="ollama", wake_progress=True)
    host, port = asleep.proxy.address
    with requests.post(f"http://{host}:{port}/api/chat", timeout=60, stream=True, json={
            "model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in answer.iter_lines() if line]
    thinking = "".join(line["message"].get("thinking", "") for line in lines if "message" in line)
    content = "".join(line["message"]["content"] for line in lines if "message" in line)
    assert thinking.startswith("sleepyllama: waking the GPU box 127.0.0.1"), lines
    assert "ready after" in thinking and content == "hi there", lines
    first_answer = next(i for i, line in enumerate(lines) if line["message"]["content"])
    assert all("thinking" in line["message"] for line in lines[:first_answer])
    assert lines[-1]["done"] is True and not any(line["done"] for line in lines[:-1])
    assert all(line["model"] == "llama3.2" for line in lines)
    assert asleep.new_packets() >= 1


def test_ollamas_error_line_ends_a_stream_that_failed() -> None:
    from sleepyllama.proxy.progress import OLLAMA, error_message

    lines = [json.loads(line) for line in
             OLLAMA.error("sleepyllama: the backend did not wake", "x", 503).splitlines()]
    # the text a user sees (Open WebUI drops "error"), then Ollama's own last line
    assert lines[0]["message"] == {"role": "assistant",
                                   "content": "sleepyllama: the backend did not wake"}
    assert lines[-1] == {"error": "sleepyllama: the backend did not wake"}
    assert error_message(404, b'{"error":"model \'nope\' not found"}') == "model 'nope' not found"
