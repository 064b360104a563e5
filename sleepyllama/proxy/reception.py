"""The requests of a client met while its backend is not known to be ready, read with h11.

Each request head is read (at most MAX_HEAD bytes, within HEAD_TIMEOUT) and policy.decide()
says what to do: answer it from the cache and read the next one on the same connection
(keep-alive, pipelining), refuse it, or hand the client back to be routed (backend.py: held
for the wake, or passed on if the backend is ready by then) together with every byte read so
far, which goes to the backend first: nothing is lost, duplicated or reordered. A client that
does not speak HTTP/1.x (TLS, HTTP/2, raw TCP) is handed over with its first bytes as it is.
Nothing here runs once the backend is ready: then clients are spliced. A restart hands over
each client being read or checked here, with what was read of it (take_unanswered).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

import h11

from sleepyllama import kinds, ledger
from sleepyllama.compat import ASYNC_TIMEOUT, timeout, timeout_at
from sleepyllama.config import ProxyConfig
from sleepyllama.proxy import api_key, policy
from sleepyllama.proxy import progress as progress_module
from sleepyllama.proxy.cache import AnswerCache, headers
from sleepyllama.proxy.client import Client, linger
from sleepyllama.proxy.reply import error_reply
from sleepyllama.proxy.wake import Wake

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # a request head larger than this is answered 431
HEAD_TIMEOUT = 10.0  # a request head must arrive within this (a trickling head is answered 408)
KEEPALIVE_IDLE = 30.0  # a kept-alive connection without a next request is closed after this
SEND_TIMEOUT = 30.0  # a cached answer must be taken by the client within this
BODY_TIMEOUT = 30.0  # a chat request's body, read to tell whether it is streamed
MAX_STREAM_BODY = progress_module.MAX_BODY


def user_agent(headers: list[tuple[bytes, bytes]]) -> str:
    """The User-Agent, printable and short enough for a journal line."""
    for name, value in headers:
        if name.lower() == b"user-agent":
            text = value.decode("ascii", "replace")
            return "".join(c if c.isprintable() else "?" for c in text)[:100]
    return ""


def _has_body(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class Reception:
    def __init__(self, loop: asyncio.AbstractEventLoop, config: ProxyConfig, cache: AnswerCache,
                 wake: Wake, route: Callable[[Client], None], *,
                 progress: Callable[[Client, h11.Request, bytes, tuple], None] | None = None,
                 key: str | None = None) -> None:
        self.loop, self.config, self.cache, self.key = loop, config, cache, key
        # asked before answering from the cache ("awake", "asleep" or "waking"), since a backend
        # whose readiness is merely stale is most often awake, and then it answers itself
        self.wake = wake
        self.route = route  # a client handed on, with every byte read from it
        self.progress = progress  # serves a streamed chat with the wake's progress in it
        self.reading: dict[asyncio.Task[None], Client] = {}
        self.answering: set[Client] = set()  # an answer of ours partly sent: not handed over
        self.refused = 0

    def receive(self, client: Client) -> None:
        client.received = True
        task = self.loop.create_task(self._receive(client))
        self.reading[task] = client
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.answering.discard(self.reading.pop(task))

    def take_unanswered(self) -> list[Client]:
        """For a restart (handover.py): the clients whose request is being read or checked,
        with every byte read of it, to be read again by the next process. One to which an
        answer of ours is under way is not: it is closed, as before."""
        taken = []
        for client in self.reading.values():
            if client not in self.answering:
                client.received = False  # what it sent is in its prefix, to be read again
                taken.append(client)
        return taken

    def close_all(self) -> None:
        for task in list(self.reading):
            task.cancel()

    async def _receive(self, client: Client) -> None:
        try:
            await self._read_requests(client)
        except asyncio.CancelledError:
            self._close(client)
            raise
        except OSError:
            self._close(client)
        except Exception:  # a bug must cost this one connection only, and be seen
            log.exception("error while reading the request of %s", client.peer)
            self._close(client)

    async def _read_requests(self, client: Client) -> None:
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        # the raw bytes of the request being read, from its first byte on; kept in the client's
        # prefix too, for a restart to hand over. A client handed over in the middle of its
        # request comes with what the process before read of it.
        pending, handed_over = b"", client.prefix
        deadline = self.loop.time() + HEAD_TIMEOUT
        speaks_http: bool | None = None
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as error:
                status = error.error_status_hint
                self._reject(client, status, f"not a request sleepyllama can read: {error}",
                             "invalid_request_error")
                return
            if event is h11.NEED_DATA:
                data, handed_over = handed_over or await self._recv(client, deadline), b""
                if data is None:  # the head did not come in time
                    if speaks_http is None and not pending and self.config.wake_on is None:
                        # silent from the start: a protocol whose server speaks first
                        self._hand_over(client, b"", "")
                    elif pending:
                        self._reject(client, 408, "the request head did not "
                                     f"arrive within {HEAD_TIMEOUT:g} s", "invalid_request_error")
                    else:
                        self._close(client)  # an idle keep-alive connection: just close it
                    return
                if not data:
                    self._close(client)  # hung up
                    return
                pending += data
                client.prefix = pending
                if speaks_http is None:
                    speaks_http = policy.speaks_http1(pending)
                    if speaks_http is None:
                        continue
                    if not speaks_http:
                        self._hand_over(client, pending, "")
                        return
                    connection.receive_data(pending)
                else:
                    connection.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                self._close(client)
                return
            if not isinstance(event, h11.Request):
                continue  # the rest of a request already answered
            end_of_head = pending.find(b"\r\n\r\n")
            if not 0 <= end_of_head <= MAX_HEAD:  # h11 limits heads that arrive in parts only
                self._reject(client, 431, f"a request head is limited to {MAX_HEAD} bytes",
                             "invalid_request_error")
                return
            client.agent = user_agent(event.headers)
            method = event.method.decode("ascii", "replace")
            target = event.target.decode("ascii", "replace")
            head = policy.Head(method, target, _has_body(event),
                               api_key.matches(self.key, api_key.presented(event.headers)),
                               kinds.needs_key(self.config.kind, method, policy.path_of(target)))
            action, why = policy.decide(self.config, head, client.address, self.cache.cached())
            if action is policy.Action.WAKE:
                if self.progress is not None and progress_module.may_want_progress(
                        self.config, head.method, policy.path_of(head.target)):
                    await self._stream_with_progress(client, connection, event, pending)
                    return
                self._hand_over(client, pending, head.request)
                return
            if action is policy.Action.REFUSE:
                log.info("answering %s with 503: %s", client.peer, why)
                self.refused += 1
                self._reject(client, 503, f"sleepyllama: the backend "
                             f"{self.config.backend} is asleep and {why}; try again later",
                             "backend_asleep")
                return
            if action is policy.Action.UNAUTHORIZED:
                log.info("answering %s with 401: %s", client.peer, why)
                self._reject(client, 401, "Invalid API Key",
                             "authentication_error")
                return
            if action is policy.Action.BAD_REQUEST:
                self._reject(client, 400, f"sleepyllama: {why}",
                             "invalid_request_error")
                return
            backend = await self.wake.look()
            if backend == "awake":
                log.debug("%s from %s goes to the backend: it is awake", head.request,
                          client.peer)
                client.prefix, client.request = pending, head.request
                self.route(client)  # connected at once: the backend is ready
                return
            if (backend == "asleep" and head.request in self.config.prewake_on
                    and policy.client_may_wake(self.config, client.address)):
                self.wake.prewake(client, head.request)
            if not await self._answer_from_cache(client, connection, head, backend):
                return
            pending = client.prefix = connection.trailing_data[0]  # the next request's, if pipelined
            deadline = self.loop.time() + KEEPALIVE_IDLE

    async def _stream_with_progress(self, client: Client, connection: h11.Connection,
                                    request: h11.Request, pending: bytes) -> None:
        """Read the whole request; a streamed chat is served with the wake's progress in its
        stream, anything else (not streamed, too large, pipelined) is held as before with every
        byte read."""
        target = policy.path_of(request.target.decode("ascii", "replace"))
        body, deadline = b"", self.loop.time() + BODY_TIMEOUT
        while True:
            try:
                item = connection.next_event()
            except h11.RemoteProtocolError as error:
                self._reject(client, 400, f"not a request sleepyllama can read: "
                             f"{error}", "invalid_request_error")
                return
            if item is h11.NEED_DATA:
                data = await self._recv(client, deadline) if len(pending) < MAX_STREAM_BODY else None
                if not data:  # hung up, too slow or too large: held as before, all bytes kept
                    if data == b"":
                        self._close(client)
                    else:
                        self._hand_over(client, pending, f"POST {target}")
                    return
                pending += data
                client.prefix = pending
                connection.receive_data(data)
                continue
            if isinstance(item, h11.Data):
                body += item.data
                continue
            break  # EndOfMessage (or a protocol error's ConnectionClosed)
        chat = progress_module.wants_progress(self.config, "POST", target, body)
        if chat is None or not isinstance(item, h11.EndOfMessage) or connection.trailing_data[0]:
            self._hand_over(client, pending, f"POST {target}")
            return
        log.info("%s POST %s: a streamed chat, answered with the wake's progress", client.peer,
                 target)
        self.progress(client, request, body, chat)

    async def _answer_from_cache(self, client: Client, connection: h11.Connection,
                                 head: policy.Head, backend: str) -> bool:
        """Send the cached answer; True when the connection stays open for the next request."""
        while not isinstance(connection.next_event(), h11.EndOfMessage):
            pass  # a GET without a body: its end follows its head at once
        entry = self.cache.answer(policy.path_of(head.target))
        assert entry is not None  # decide() saw it among the cached
        # h11 writes it and keeps track of keep-alive (Connection: close, HTTP/1.0)
        answer = connection.send(h11.Response(status_code=entry.status, reason=b"OK",
                                              headers=headers(entry, time.time(), backend)))
        answer += connection.send(h11.Data(data=entry.body))  # the body as the backend sent it
        answer += connection.send(h11.EndOfMessage())
        close = connection.our_state is h11.MUST_CLOSE
        self.answering.add(client)
        try:
            # a client that never reads its answer must not hold its slot for ever
            async with timeout(SEND_TIMEOUT):
                await self.loop.sock_sendall(client.sock, answer)
            self.answering.discard(client)
        except ASYNC_TIMEOUT:
            log.info("closing %s: it did not read its answer within %g s", client.peer,
                     SEND_TIMEOUT)
            self._close(client)
            return False
        self.cache.answered += 1
        self.wake.to_ledger(ledger.AnsweredAsleep(request=head.request, client=client.peer))
        log.info("answered %s from the cache for %s: backend %s", head.request, client.peer,
                 backend)
        self.wake.changed()
        if close:
            client.sock.shutdown(socket.SHUT_WR)
            linger(self.loop, client.sock, self.wake.closed)
            return False
        connection.start_next_cycle()
        return True

    async def _recv(self, client: Client, deadline: float) -> bytes | None:
        try:
            async with timeout_at(deadline):
                return await self.loop.sock_recv(client.sock, 65536)
        except ASYNC_TIMEOUT:
            return None

    def _hand_over(self, client: Client, pending: bytes, request: str) -> None:
        """Hand the client on, to wake the backend, with what it sent; `request` is "" for bytes that are not
        an HTTP/1.x request (TLS, HTTP/2, a scanner's probe)."""
        if not policy.client_may_wake(self.config, client.address):
            log.info("closing %s: it may not wake the backend (wake_from)", client.peer)
            self.refused += 1
            self._close(client)
            return
        if not request and self.config.wake_on is not None:
            # wake_on names HTTP requests: nothing else may wake the box (a scanner, a TLS probe)
            log.info("closing %s: it sent no HTTP/1.x request, and only those named in wake_on "
                     "may wake the backend", client.peer)
            self.refused += 1
            self._close(client)
            return
        client.prefix, client.request = pending, request
        self.route(client)

    def _reject(self, client: Client, status: int, message: str, kind: str) -> None:
        try:
            client.sock.send(error_reply(status, message, kind))
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(client)
            return
        linger(self.loop, client.sock, self.wake.closed)
        self.wake.changed()

    def _close(self, client: Client) -> None:
        client.sock.close()
        self.wake.closed()
