"""A wake the user can see: a streamed chat completion through a wake, read by the official
openai client as a frontend would, with the wake's progress as reasoning before the backend's
own tokens; a backend error and a give-up end the stream with an error the client raises."""

from __future__ import annotations

import socket
import time

import pytest

from sleepyllama import config
from sleepyllama.hints import Hint, encode
from sleepyllama.proxy.progress import OLLAMA, OPENAI, error_message, wants_progress

from conftest import (
    ProxyRun,
    SleepingBackend,
    chat_request,
    free_port,
    http_request,
    proxy_table,
    require,
    udp_to,
)


@pytest.fixture(autouse=True)
def socket_activate() -> None:
    require("systemd-socket-activate")


def table(**keys: str) -> config.ProxyConfig:
    extra = "".join(f"{key} = {value}\n" for key, value in keys.items())
    return config.parse(f'[proxy.t]\nbackend = "h:1"\nmac = "ab:cd:ef:01:23:45"\n{extra}'
                        ).proxy("t")


def test_only_a_streamed_chat_gets_progress_and_only_when_asked() -> None:
    on = table(wake_progress="true")
    streamed = b'{"model": "qwen", "stream": true, "messages": []}'
    assert wants_progress(on, "POST", "/v1/chat/completions", streamed) == (OPENAI, "qwen")
    assert wants_progress(on, "POST", "/v1/chat/completions", streamed.replace(b"true", b"false")) is None
    assert wants_progress(on, "POST", "/v1/completions", streamed) is None
    assert wants_progress(on, "POST", "/v1/chat/completions", b"not json") is None
    assert wants_progress(table(), "POST", "/v1/chat/completions", streamed) is None
    # Ollama's chat streams unless told not to
    assert wants_progress(on, "POST", "/api/chat", b'{"model": "llama3.2"}') == (OLLAMA, "llama3.2")
    assert wants_progress(on, "POST", "/api/chat", b'{"model": "m", "stream": false}') is None
    assert wants_progress(on, "POST", "/api/generate", b'{"model": "m"}') is None


def test_the_backends_error_message_is_what_the_error_event_says() -> None:
    assert error_message(400, b'{"error": {"message": "bad", "code": 400}}') == "bad"
    assert error_message(500, b"boom\n") == "boom"
    assert error_message(502, b"") == "HTTP 502"


def client_for(proxy: ProxyRun):
    from openai import OpenAI

    host, port = proxy.address
    return OpenAI(base_url=f"http://{host}:{port}/v1", api_key="none", max_retries=0, timeout=60)


def test_the_official_client_reads_the_wake_then_the_tokens(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=2.5, tokens=4)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True))
    cleanup.append(proxy)
    stream = client_for(proxy).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    reasoning, content, order = "", "", []
    for chunk in stream:
        delta = chunk.choices[0].delta
        thought = (delta.model_extra or {}).get("reasoning_content")
        if thought:
            reasoning += thought
            order.append("reasoning")
        if delta.content:
            content += delta.content
            order.append("content")
    assert reasoning.startswith("sleepyllama: waking the GPU box 127.0.0.1")
    assert "the box is up after" in reasoning and "loading the model" in reasoning, reasoning
    assert "ready after" in reasoning
    assert content == "token0 token1 token2 token3 "
    assert order.index("content") > max(i for i, kind in enumerate(order) if kind == "reasoning")
    assert backend.packets()
    assert "answered with the wake's progress" in proxy.log()


def test_a_backend_error_after_the_wake_is_the_streams_error(tmp_path, cleanup) -> None:
    from openai import APIError

    backend = SleepingBackend(tmp_path, load_seconds=0.5)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True))
    cleanup.append(proxy)
    stream = client_for(proxy).chat.completions.create(
        model="no-such-model", stream=True, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(APIError, match="model 'no-such-model' not found"):
        for _chunk in stream:
            pass


def unwakeable(tmp_path, cleanup, **keys: str) -> ProxyRun:
    """A proxy with progress in front of a backend that never comes up."""
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{free_port()}",
                                           wol_port=free_port(socket.SOCK_DGRAM),
                                           wol_interval="0.5s", wake_progress=True, **keys))
    cleanup.append(proxy)
    return proxy


def test_a_give_up_while_streaming_progress_is_the_streams_error(tmp_path, cleanup) -> None:
    from openai import APIError

    proxy = unwakeable(tmp_path, cleanup, wake_timeout="2s")
    stream = client_for(proxy).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(APIError, match="did not wake up within 2s"):
        for _chunk in stream:
            pass
    assert "did not wake within 2s" in proxy.log()


def test_a_proxy_restart_during_the_wake_ends_the_stream_with_an_error(tmp_path, cleanup) -> None:
    """A stream the proxy writes itself cannot go through the fd store: it ends with an error
    the client shows, not a bare close in the middle of its thinking block."""
    from openai import APIError

    proxy = unwakeable(tmp_path, cleanup)
    stream = client_for(proxy).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    first = next(iter(stream))
    assert "waking the GPU box" in first.choices[0].delta.model_extra["reasoning_content"]
    proxy.process.popen.terminate()  # SIGTERM, as systemctl restart sends it
    with pytest.raises(APIError, match="the proxy restarted during the wake"):
        for _chunk in stream:
            pass


def test_a_chat_that_is_not_streamed_is_held_as_before(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.5)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True))
    cleanup.append(proxy)
    answer = http_request(proxy.address, chat_request(stream=False))
    assert answer.startswith(b"HTTP/1.1 200") and b"chat.completion" in answer
    assert b"wake-progress" not in answer


def test_an_awake_backend_merely_unconfirmed_gets_no_progress_text(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0, tokens=2)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True))
    cleanup.append(proxy)
    assert http_request(proxy.address, chat_request(stream=False)).startswith(b"HTTP/1.1 200")
    time.sleep(5.5)  # the proxy's ready verdict is stale now; the backend still runs
    answer = http_request(proxy.address, chat_request(stream=True))
    assert b"token0" in answer and b"data: [DONE]" in answer
    assert b"reasoning_content" not in answer, answer[:600]


def test_a_box_up_on_the_cpu_is_said_in_the_stream(tmp_path, cleanup) -> None:
    """The GPU box's "ready" hint says its server came up on the CPU (CUDA failed after the
    resume): the user reads it in the chat's thinking, not only in a journal."""
    backend = SleepingBackend(tmp_path, load_seconds=2.5, tokens=2)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True),
                     activate=False)
    cleanup.append(proxy)
    stream = client_for(proxy).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    reasoning = ""
    for chunk in stream:
        thought = (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        if "waking the GPU box" in thought:
            udp_to(proxy.address, encode(Hint("ready", "llama", on_cpu=True)))
        reasoning += thought
    assert "the box is up, but its GPU is not: llama answers on the CPU" in reasoning, reasoning
    assert "llama is ready on the CPU" in proxy.log()


def test_a_failed_wake_in_ollamas_dialect_is_text_the_user_sees(tmp_path, cleanup) -> None:
    """Open WebUI's Ollama connection drops a line's "error" key (issue 20: a failed wake showed
    as an empty answer): the failure comes first as the answer's text, then as Ollama's own
    error line for clients that read it."""
    import json

    import requests

    proxy = unwakeable(tmp_path, cleanup, wake_timeout="2s")
    host, port = proxy.address
    with requests.post(f"http://{host}:{port}/api/chat", timeout=60, stream=True,
                       json={"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
                       ) as answer:
        lines = [json.loads(line) for line in answer.iter_lines() if line]
    said = [line["message"]["content"] for line in lines if line.get("message", {}).get("content")]
    assert len(said) == 1 and "did not wake up within 2s" in said[0], lines
    assert "did not wake up within 2s" in lines[-1]["error"]
    assert lines.index(next(line for line in lines if line.get("message", {}).get("content"))) < (
        len(lines) - 1)


def test_a_proxy_restart_during_the_answer_ends_the_stream_with_an_error(tmp_path, cleanup) -> None:
    """A streamed chat through the progress path was cut by `systemctl restart` with no error
    event and no [DONE] once the backend's tokens flowed: the error went out only while waiting."""
    from openai import APIError

    backend = SleepingBackend(tmp_path, load_seconds=0.5, tokens=60, token_delay=0.25)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s", wake_progress=True))
    cleanup.append(proxy)
    stream = client_for(proxy).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    content = ""
    with pytest.raises(APIError, match="the proxy restarted during the answer"):
        for chunk in stream:
            content += chunk.choices[0].delta.content or "" if chunk.choices else ""
            if content.count("token") == 3:  # the backend's own tokens flow
                proxy.process.popen.terminate()  # SIGTERM, as systemctl restart sends it
    assert content.startswith("token0 token1 token2")
