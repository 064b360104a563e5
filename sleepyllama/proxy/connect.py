"""Connecting a client to the backend and splicing the two, and what goes wrong on the way.

The backend's address comes from the wake (backend.py). A refused or timed-out connect hands
the client back to be held (the box may be asleep); a connection that dies with the backend's
host (splice.BACKEND_LOST) says so, so that the next client wakes it. An error of the proxy's
own (out of fds, of memory) costs one client only: its 503 if it spoke HTTP, and its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import select
import socket
from collections.abc import Callable

from sleepyllama.proxy.client import Client, reply_if_http

# a ready backend on a LAN answers in milliseconds, to a probe as to a client: silence is asleep
from sleepyllama.proxy.probe import CONNECT_TIMEOUT
from sleepyllama.proxy.reply import error_reply
from sleepyllama.proxy.splice import PumpState, Splice, tune_backend_socket

log = logging.getLogger(__name__)


class Refused(OSError):
    """The backend did not take a connection: refused, timed out, unreachable."""


def _done_already(sock: socket.socket) -> bool:
    """Whether a non-blocking connect has finished (either way), without waiting."""
    poll = select.poll()
    poll.register(sock, select.POLLOUT)
    return bool(poll.poll(0))


class _Dial:
    """One connect to the backend in flight, bounded by CONNECT_TIMEOUT; `then` gets the
    connected socket, `failed` why there is none."""

    def __init__(self, loop: asyncio.AbstractEventLoop, family: int, sockaddr: tuple,
                 then: Callable[[socket.socket], None], failed: Callable[[str], None]) -> None:
        self.loop, self.then, self.failed = loop, then, failed
        self.timer: asyncio.TimerHandle | None = None
        self.over = False  # connected or given up: its callback has run
        self.backend = socket.socket(family, socket.SOCK_STREAM)  # OSError: the proxy's own
        tune_backend_socket(self.backend)
        error = self.backend.connect_ex(sockaddr)
        if error == 0:
            self.over = True
            then(self.backend)
        elif error != errno.EINPROGRESS:
            self._give_up(errno.errorcode.get(error, str(error)))
        elif _done_already(self.backend):
            # a backend on this host (or a quick LAN) has answered by now: a turn of the event
            # loop for it would cost more than the connect
            self._connected()
        else:
            self.timer = loop.call_later(CONNECT_TIMEOUT, self._give_up, "connect timed out")
            loop.add_writer(self.backend.fileno(), self._connected)

    def _connected(self) -> None:
        self._stop_waiting()
        error = self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._give_up(errno.errorcode.get(error, str(error)))
        else:
            self.over = True
            self.then(self.backend)

    def _give_up(self, why: str) -> None:
        self.abort()
        self.over = True
        self.failed(why)

    def _stop_waiting(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.loop.remove_writer(self.backend.fileno())

    def abort(self) -> None:
        self._stop_waiting()
        self.backend.close()


class Connector:
    """The one way to the backend: every client's connection, spliced or read by progress."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        address: Callable[[], tuple[int, tuple]],  # the wake's last resolve
        refused: Callable[[Client | None, str], None],  # connect failed: the client, if any
        lost: Callable[[OSError], None],  # the backend's host vanished under a connection
        closed: Callable[[], None],  # one client's connection is over
    ) -> None:
        self.loop, self.address = loop, address
        self.refused, self.lost, self.closed = refused, lost, closed
        self.splices: set[Splice] = set()
        # clients on their way: a connect under way, or what reception read of them not yet
        # all sent (the backend's socket, and what is left to send of the prefix)
        self.dialing: dict[Client, _Dial] = {}
        self.sending: dict[Client, tuple[socket.socket, bytes]] = {}

    def connect(self, client: Client) -> None:
        """Splice `client` to the backend; a failed connect goes to `refused` with it."""
        try:
            dial = _Dial(self.loop, *self.address(),
                         lambda backend: self._connected(client, backend),
                         lambda why: self._failed(client, why))
        except OSError as error:  # EMFILE, ENFILE, ENOBUFS: this client only
            self.cannot_serve(client, error)
            return
        if not dial.over:
            self.dialing[client] = dial

    def _failed(self, client: Client, why: str) -> None:
        self.dialing.pop(client, None)
        self.refused(client, why)

    def _connected(self, client: Client, backend: socket.socket) -> None:
        """The backend took the connection: what was read of the client goes first, at once
        where it fits (it nearly always does: a request head to a fresh socket), then the
        splice starts."""
        self.dialing.pop(client, None)
        if not client.prefix:
            self._splice(client, backend)
            return
        try:
            sent = backend.send(client.prefix)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            backend.close()
            self.refused(client, error.strerror or str(error))
            return
        if sent == len(client.prefix):
            self._splice(client, backend)
            return
        self.sending[client] = (backend, client.prefix[sent:])
        self.loop.add_writer(backend.fileno(), self._send_more, client)

    def _send_more(self, client: Client) -> None:
        backend, rest = self.sending[client]
        try:
            sent = backend.send(rest)
        except BlockingIOError:
            return
        except OSError:
            self._stop_sending(client)
            backend.close()
            client.sock.close()
            self.closed()
            return
        if sent < len(rest):
            self.sending[client] = (backend, rest[sent:])
            return
        self._stop_sending(client)
        self._splice(client, backend)

    def _stop_sending(self, client: Client) -> socket.socket:
        backend, _rest = self.sending.pop(client)
        self.loop.remove_writer(backend.fileno())
        return backend

    def take_unconnected(self) -> list[Client]:
        """For a restart (handover.py): the clients on their way to the backend of which
        nothing reached it yet (a connect under way, a prefix not begun), to be held by the next
        process with what was read of them. One partly sent is closed, as a splice that did not
        fit in the fd store is."""
        taken = list(self.dialing)
        for dial in self.dialing.values():
            dial.abort()
        self.dialing.clear()
        for client, (_backend, rest) in list(self.sending.items()):
            self._stop_sending(client).close()
            if rest == client.prefix:
                taken.append(client)
            else:
                client.sock.close()
                self.closed()
        return taken

    async def open(self) -> socket.socket:
        """A connection to the backend for a request the proxy itself sends on (a stream with
        progress); Refused, told to `refused` as any client's, when there is none."""
        taken: asyncio.Future[socket.socket] = self.loop.create_future()

        def failed(why: str) -> None:
            self.refused(None, why)
            if not taken.done():
                taken.set_exception(Refused(why))

        dial = _Dial(self.loop, *self.address(),
                     lambda backend: taken.done() or taken.set_result(backend), failed)
        try:
            return await taken
        except asyncio.CancelledError:
            dial.abort()
            raise

    def cannot_serve(self, client: Client, error: OSError) -> None:
        """An error of the proxy's own (out of file descriptors, of memory) costs this client
        only: its 503 if it spoke HTTP, its socket closed, its slot given back."""
        log.warning("cannot serve %s: %s", client.peer, error.strerror or error)
        with contextlib.suppress(OSError):
            reply_if_http(client, error_reply(
                503, f"sleepyllama: the proxy cannot open a connection now "
                f"({error.strerror or error}); try again", "proxy_overloaded", 5))
        client.sock.close()
        self.closed()

    def _splice(self, client: Client, backend: socket.socket) -> None:
        try:
            splice = Splice(self.loop, client.sock, backend, self._splice_closed,
                            on_first_answer=client.on_first_answer)
        except OSError as error:
            backend.close()
            self.cannot_serve(client, error)
            return
        self.splices.add(splice)
        splice.start()

    def _splice_closed(self, splice: Splice, backend_lost: OSError | None) -> None:
        self.splices.discard(splice)
        if backend_lost is not None:
            self.lost(backend_lost)
        self.closed()

    # -- restart and shutdown -----------------------------------------------------------------

    def detach(self) -> list[Splice]:
        """The running splices, out of this process's hands, for a restart (handover.py)."""
        splices = [splice for splice in self.splices if splice.started and not splice.closed]
        self.splices.difference_update(splices)
        return splices

    def adopt(self, client: socket.socket, backend: socket.socket,
              pumps: tuple[PumpState, PumpState]) -> None:
        """Go on with a splice of the process before a restart."""
        splice = Splice(self.loop, client, backend, self._splice_closed, pumps)
        self.splices.add(splice)
        splice.start()

    def close_all(self) -> None:
        for client in self.take_unconnected():
            client.sock.close()
            self.closed()
        for splice in list(self.splices):
            splice.close()
