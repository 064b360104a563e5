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
        self.backend = socket.socket(family, socket.SOCK_STREAM)  # OSError: the proxy's own
        tune_backend_socket(self.backend)
        error = self.backend.connect_ex(sockaddr)
        if error == 0:
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
            self.then(self.backend)

    def _give_up(self, why: str) -> None:
        self.abort()
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

    def connect(self, client: Client) -> None:
        """Splice `client` to the backend; a failed connect goes to `refused` with it."""
        try:
            _Dial(self.loop, *self.address(), lambda backend: self._splice(client, backend),
                  lambda why: self.refused(client, why))
        except OSError as error:  # EMFILE, ENFILE, ENOBUFS: this client only
            self.cannot_serve(client, error)

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
        if client.prefix:  # what reception read goes first, then the rest of the stream
            self.loop.create_task(self._send_prefix_then_splice(client.prefix, backend, splice))
        else:
            splice.start()

    async def _send_prefix_then_splice(self, prefix: bytes, backend: socket.socket,
                                       splice: Splice) -> None:
        try:
            await self.loop.sock_sendall(backend, prefix)
        except OSError:
            splice.close()
            return
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
        for splice in list(self.splices):
            splice.close()
