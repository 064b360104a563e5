"""A wake the user can see: a streamed chat that must wait for the box is answered at once with a
stream whose first chunks tell, as the model's reasoning, what is happening (Open WebUI shows it
in its thinking block); then the request goes to the backend and the backend's own chunks
follow. Two dialects, each as its clients read it:

- OpenAI's `POST .../chat/completions` with `"stream": true`: server-sent events in the shape of
  llama-swap's loading state (internal/router/loading.go), `data: {"choices": [{"delta":
  {"reasoning_content": ...}}]}`; an error is an error event, then `data: [DONE]`.
- Ollama's `POST /api/chat`, streamed unless `"stream": false` (api/types.go): JSON lines
  (`application/x-ndjson`, server/routes.go streamResponse) `{"model", "created_at", "message":
  {"role": "assistant", "content": "", "thinking": ...}, "done": false}`; an error is a line
  `{"error": "..."}`, as Ollama itself ends a stream that failed. Open WebUI's Ollama connection
  turns `message.thinking` into reasoning (utils/response.py).

The stream always ends properly: the backend's own end, or an error naming what failed, then
the connection closes. Pure parts (the chunks, whether a request wants progress) are apart from
the one coroutine that does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

from sleepyllama.compat import ASYNC_TIMEOUT, timeout
from sleepyllama.config import ProxyConfig
from sleepyllama.proxy.client import Client
from sleepyllama.proxy.policy import path_of
from sleepyllama.proxy.probe import hint as probe_hint
from sleepyllama.proxy.wake import Wake
from sleepyllama.words import format_duration

log = logging.getLogger(__name__)

MAX_BODY = 16 << 20  # a chat request with its whole history; past this it is held as before
QUIET = 0.3  # an awake backend confirms within this: no progress is shown for it
TICK = 1.0  # a dot a second, so the user sees it is alive
LINE_EVERY = 10.0  # and a line with the time and the packets every so often
MAX_ERROR_BODY = 64 << 10

def _head(content_type: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\nCache-Control: no-cache"
            b"\r\nX-Sleepyllama: wake-progress\r\nConnection: close\r\n\r\n")


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def event(payload: object) -> bytes:
    return b"data: " + _json(payload) + b"\n\n"


def reasoning(text: str, model: str, created: int) -> bytes:
    """One chunk whose delta carries `text` as reasoning, as a chat.completion.chunk."""
    return event({"id": "sleepyllama-wake", "object": "chat.completion.chunk", "created": created,
                  "model": model, "choices": [{"index": 0, "finish_reason": None, "delta": {
                      "role": "assistant", "reasoning_content": text}}]})


def error(message: str, kind: str, code: int) -> bytes:
    """An error event (OpenAI's clients raise it as an APIError), then the end."""
    return event({"error": {"message": message, "type": kind, "code": code}}) + b"data: [DONE]\n\n"


def ollama_thinking(text: str, model: str, created: int) -> bytes:
    """One line of Ollama's chat stream whose message carries `text` as thinking."""
    return _json({"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime(created)),
                  "message": {"role": "assistant", "content": "", "thinking": text},
                  "done": False}) + b"\n"


def ollama_error(message: str, _kind: str, _code: int) -> bytes:
    """The failure as the answer's text, then the line Ollama ends a failed stream with: Open
    WebUI's Ollama connection drops a line's "error" key, and showed an empty answer."""
    said = _json({"model": "sleepyllama", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime()),
                  "message": {"role": "assistant", "content": message}, "done": False})
    return said + b"\n" + _json({"error": message}) + b"\n"


@dataclass(frozen=True)
class Dialect:
    """How one API's streamed chat says progress and errors."""

    name: str
    head: bytes
    progress: Callable[[str, str, int], bytes]  # (text, model, created)
    error: Callable[[str, str, int], bytes]  # (message, kind, status)
    streams_by_default: bool  # a request without "stream" streams


OPENAI = Dialect("openai", _head(b"text/event-stream"), reasoning, error, False)
OLLAMA = Dialect("ollama", _head(b"application/x-ndjson"), ollama_thinking, ollama_error, True)


def dialect_of(method: str, target: str) -> Dialect | None:
    """The chat API a request speaks, if it is a chat at all."""
    path = target.split("?", 1)[0]
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return OPENAI
    if path.endswith("/api/chat"):
        return OLLAMA
    return None


def may_want_progress(config: ProxyConfig, method: str, target: str) -> bool:
    """Whether a request's body must be read to tell (a chat, with wake_progress)."""
    return config.wake_progress and dialect_of(method, target) is not None


def wants_progress(config: ProxyConfig, method: str, target: str, body: bytes
                   ) -> tuple[Dialect, str] | None:
    """The dialect and model of a streamed chat to show progress for; None for anything else."""
    dialect = dialect_of(method, target) if config.wake_progress else None
    if dialect is None:
        return None
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    if request.get("stream", dialect.streams_by_default) is not True:
        return None
    model = request.get("model")
    return dialect, model if isinstance(model, str) else ""


def error_message(status: int, body: bytes) -> str:
    """What an error answer of the backend says, for the error event."""
    try:
        answer = json.loads(body)
        inner = answer.get("error", answer) if isinstance(answer, dict) else answer
        message = inner.get("message") if isinstance(inner, dict) else inner  # Ollama: a string
        if isinstance(message, str):
            return message
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:500] or f"HTTP {status}"


class ClientGone(Exception):
    """The client hung up or stopped reading: nothing more can be told to it."""


class Progress:
    """Serves one streamed chat completion through a wake, with progress in the stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: ProxyConfig, wake: Wake,
                 open_backend: Callable[[], Awaitable[socket.socket]]) -> None:
        self.loop, self.config, self.wake = loop, config, wake
        self.open_backend = open_backend  # the connector's: the same way as every client's
        self.tasks: set[asyncio.Task[None]] = set()

    def serve(self, client: Client, request: h11.Request, body: bytes,
              chat: tuple[Dialect, str]) -> None:
        task = self.loop.create_task(self._serve(client, request, body, chat))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def close_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def _serve(self, client: Client, request: h11.Request, body: bytes,
                     chat: tuple[Dialect, str]) -> None:
        dialect, model = chat
        created, started = int(time.time()), self.loop.time()
        sock, peer = client.sock, client.peer
        # for the journal and the wake's record: the path without its query
        client.request = f"POST {path_of(request.target.decode('ascii', 'replace'))}"

        def say(text: str) -> bytes:
            return dialect.progress(text, model, created)

        waiting = True  # until the backend's own chunks flow, an error chunk may still go out
        try:
            await self._send(sock, dialect.head)
            # the wait is bounded (wake_timeout); the answer is not: a long generation streams
            # for as long as it takes, and a vanished backend is noticed by its socket
            async with timeout(self.wake.wake_timeout() + 60):
                ready = await self._wait(client, say, started)
            if not ready:
                waited = self.loop.time() - started
                log.info("ending the stream of %s with an error: its backend did not wake", peer)
                # up, but nothing listens on the port: said as soon as the wake knows it
                refused = self.wake.view().phase == "refused"
                hint = probe_hint("Connection refused", self.config.backend) if refused else ""
                early = refused and waited < self.wake.wake_timeout() - 1
                await self._send(sock, dialect.error(
                    f"sleepyllama: {hint} (waited {waited:.0f} s)" if early else
                    f"sleepyllama: the backend {self.config.backend} did not wake up within "
                    f"{format_duration(self.wake.wake_timeout())} (waited {waited:.0f} s)"
                    + (f"; {hint}" if hint else ""),
                    "backend_not_listening" if early else "backend_unavailable", 503))
                return
            waiting = False
            await self._pass_on(sock, peer, request, body, dialect)
        except (ClientGone, *ASYNC_TIMEOUT) as problem:
            log.info("stream with progress for %s ended early: %s", peer, problem or "hung up")
        except asyncio.CancelledError:
            # the proxy stops (a restart): a stream it writes itself cannot be handed over, so
            # it ends with an error the client shows, not a bare close mid-thought or mid-answer
            # (the backend's events are passed on whole, as they come: the error follows one)
            with contextlib.suppress(OSError):
                sock.send(dialect.error(
                    "sleepyllama: the proxy restarted during the wake; send the message again"
                    if waiting else "sleepyllama: the proxy restarted during the answer, which "
                    "is cut here; send the message again", "proxy_restarting", 503))
            raise
        finally:
            sock.close()
            self.wake.closed()

    async def _wait(self, client: Client, say: Callable[[str], bytes], started: float) -> bool:
        """Wait for the backend with a dot a second and a line on each change, so that the
        frontend (and the user) sees it is alive; a client that hangs up ends it."""
        sock = client.sock
        wake = self.loop.create_task(self.wake.wait_ready(client))
        phase, last_line = "waking", started
        try:
            # a backend merely unconfirmed (awake, its last probe a few seconds old) answers at
            # once: then nothing is said about a wake that did not happen
            await asyncio.wait([wake], timeout=QUIET)
            if wake.done():
                return wake.result()
            expectation = self.wake.expectation()
            await self._send(sock, say(
                f"sleepyllama: waking the GPU box {self.config.backend.host}"
                f"{f' ({expectation})' if expectation else ''}…\n"))
            while not wake.done():
                await asyncio.wait([wake], timeout=TICK)
                if wake.done():
                    break
                now = self.loop.time()
                view = self.wake.view()
                seen = view.phase
                if seen != phase:
                    phase = seen
                    text = (f"\nthe box is up after {now - started:.0f} s, but nothing listens on "
                            f"port {self.config.backend.port} yet…" if seen == "refused" else
                            f"\nthe box is up after {now - started:.0f} s, loading the model…")
                elif now - last_line >= LINE_EVERY:
                    text = (f"\nstill waking · {now - started:.0f} s · "
                            f"{view.signals} packets")
                else:
                    text = "."
                if text != ".":
                    last_line = now
                await self._send(sock, say(text))
            ready = wake.result()
            if ready:
                on_cpu = self.wake.on_cpu
                warning = (f"\nthe box is up, but its GPU is not: {on_cpu} answers on the CPU "
                           "(slower)" if on_cpu else "")
                await self._send(sock, say(
                    f"{warning}\nready after {self.loop.time() - started:.0f} s\n\n"))
            return ready
        finally:
            if not wake.done():
                wake.cancel()

    async def _pass_on(self, sock: socket.socket, peer: str, request: h11.Request,
                       body: bytes, dialect: Dialect) -> None:
        """The request to the backend; its events to the client, or its error as an event."""
        backend: socket.socket | None = None
        try:
            backend = await self.open_backend()
            client = h11.Connection(h11.CLIENT)
            headers = [(name, value) for name, value in request.headers
                       if name.lower() not in (b"connection", b"content-length",
                                               b"transfer-encoding")]
            await self.loop.sock_sendall(backend, client.send(h11.Request(
                method=request.method, target=request.target,
                headers=[*headers, (b"Content-Length", str(len(body)).encode()),
                         (b"Connection", b"close")])) + client.send(h11.Data(data=body))
                + client.send(h11.EndOfMessage()))
            status, error_body = None, b""
            while True:
                item = client.next_event()
                if item is h11.NEED_DATA:
                    data = await self.loop.sock_recv(backend, 65536)
                    client.receive_data(data)
                    continue
                if isinstance(item, h11.Response):
                    status = item.status_code
                elif isinstance(item, h11.Data) and status == 200:
                    await self._send(sock, bytes(item.data))  # the backend's own events
                elif isinstance(item, h11.Data):
                    error_body = (error_body + bytes(item.data))[:MAX_ERROR_BODY]
                elif isinstance(item, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            if status != 200:
                log.info("the backend answered %s with HTTP %s: ending its stream with the error",
                         peer, status)
                await self._send(sock, dialect.error(error_message(status or 502, error_body),
                                                     "backend_error", status or 502))
        except (OSError, h11.RemoteProtocolError, *ASYNC_TIMEOUT) as problem:
            log.info("the backend's answer to %s broke off (%s): ending its stream with the error",
                     peer, problem)
            await self._send(sock, dialect.error(f"sleepyllama: the backend's answer broke off "
                                                 f"({problem or type(problem).__name__})",
                                                 "backend_error", 502))
        finally:
            if backend is not None:
                backend.close()

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            async with timeout(30):  # a client that stopped reading is let go
                await self.loop.sock_sendall(sock, data)
        except (OSError, *ASYNC_TIMEOUT) as problem:
            raise ClientGone(str(problem)) from None
