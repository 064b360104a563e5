"""The proxy's Backend in one process, its readiness probe replaced: what a real network makes
hard to time (a connect that fails right after a 200)."""

from __future__ import annotations

import asyncio
import socket

from sleepyllama import config

from conftest import free_port
from proxy.stand_ins import NoSignal


def test_a_model_list_whose_connect_fails_right_after_ready_is_answered_from_the_cache() -> None:
    """Within 5 s of the box going down (its readiness not yet stale) a model-list request was
    passed on at once, its connect failed, and it was held: it woke the box for a look."""
    import time

    from sleepyllama.proxy.backend import Backend
    from sleepyllama.proxy.cache import AnswerCache, Entry

    port = free_port()  # nothing listens there: the box just went down
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{port}"\nmac = "ab:cd:ef:01:23:45"\n'
                         'kind = "llama-server"\n').proxy("t")
    cache = AnswerCache(f"http://127.0.0.1:{port}", ("GET /v1/models",), None, "llama-server")
    cache.entries["/v1/models"] = Entry(200, "application/json", b'{"data": []}', time.time())
    signal = NoSignal()

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, signal, probe=lambda: (False, "Connection refused"),
                          cache=cache)
        backend.wake.belief.family = socket.AF_INET
        backend.wake.belief.sockaddr = ("127.0.0.1", port)
        backend.wake.belief.readiness.believe_ready(loop.time())  # answered a moment ago
        assert backend.wake.ready
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        await loop.sock_sendall(ours, b"GET /v1/models HTTP/1.1\r\nHost: b\r\nConnection: close"
                                      b"\r\n\r\n")
        backend.serve(theirs, "client", "192.168.1.9")
        answer = await asyncio.wait_for(loop.sock_recv(ours, 4096), 10)
        ours.close()
        backend.close_all()
        return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200") and b'{"data": []}' in answer, answer[:300]
    assert signal.sent == 0, "a look woke the box"


def test_a_stream_with_progress_whose_connect_fails_tells_the_wake_the_backend_is_down() -> None:
    """A stream with progress connected on a path of its own (a 5 s connect that told nobody):
    after its failed connect the backend was still believed ready, and the next client was
    passed on at once to a port where nothing listens."""
    from sleepyllama.proxy.backend import Backend

    port = free_port()  # the probe says ready, but nothing listens: the server just went away
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{port}"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\nwake_progress = true\n').proxy("t")
    chat = (b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}')

    async def scenario() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"))
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        await loop.sock_sendall(ours, b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\n"
                                      b"Content-Type: application/json\r\nContent-Length: "
                                      + str(len(chat)).encode() + b"\r\n\r\n" + chat)
        backend.serve(theirs, "client")
        answer = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(ours, 65536), 10):
            answer += chunk
        believed_ready = backend.wake.ready
        ours.close()
        backend.close_all()
        return answer, believed_ready

    answer, believed_ready = asyncio.run(scenario())
    assert b"broke off" in answer and b"[DONE]" in answer, answer[-400:]
    assert not believed_ready, "the failed connect did not reach the wake's belief"
