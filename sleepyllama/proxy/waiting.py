"""Who waits for the backend, and how each leaves: connected once it is ready, told why not.

Clients wait in two ways: held unread in the waiting room, in arrival order, or in a task of
their own (a stream with progress, a pre-wake) through Waiting.wait(). A held client's request
stays queued, unread, in its socket (or, when reception.py read it, in Client.prefix), so a
plain reader would fire at once and spin: hang-ups are watched with EPOLLRDHUP instead. One that
hangs up is dropped at once; one held past its deadline (wake_timeout) gets an HTTP 503 (if it
spoke HTTP) or a close, and so does every one when nothing listens on the backend's port.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections.abc import Callable

from sleepyllama import ledger
from sleepyllama.compat import ASYNC_TIMEOUT, timeout
from sleepyllama.proxy import probe as probes
from sleepyllama.proxy.client import Asker, Client, linger, reply_if_http
from sleepyllama.proxy.reply import backend_unavailable, nothing_listens
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.words import format_duration

log = logging.getLogger(__name__)


class HangupWatcher:
    """Notices held clients hanging up without reading their queued request.

    A plain reader would fire (and spin) as soon as the client sends its request; EPOLLRDHUP
    fires only when the client shuts down its side. asyncio cannot ask for EPOLLRDHUP, so the
    held sockets live in an epoll of their own whose fd the event loop watches.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._ready)

    def close(self) -> None:
        """Once nothing is watched any more (a backend retired by a reload): its fd goes."""
        if not self.epoll.closed:
            self.loop.remove_reader(self.epoll.fileno())
            self.epoll.close()

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLRDHUP)
        self.callbacks[fd] = callback

    def unwatch(self, fd: int) -> None:
        if self.callbacks.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    def _ready(self) -> None:
        for fd, _events in self.epoll.poll(0):
            callback = self.callbacks.get(fd)
            if callback is not None:
                self.unwatch(fd)
                callback()


class WaitingRoom:
    """Held clients, each with its deadline timer and a watch for its hang-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, hung_up: Callable[[Client], None],
                 expired: Callable[[Client], None]) -> None:
        self.loop, self.hung_up, self.expired = loop, hung_up, expired
        self.clients: dict[int, Client] = {}  # by fd, in arrival order
        self.hangups = HangupWatcher(loop)

    def __len__(self) -> int:
        return len(self.clients)

    def first(self) -> Client:
        return next(iter(self.clients.values()))

    def add(self, client: Client) -> None:
        fd = client.sock.fileno()
        self.clients[fd] = client
        self.hangups.watch(fd, lambda: self._leave(client, self.hung_up))
        client.timer = self.loop.call_at(client.deadline, self._leave, client, self.expired)

    def remove(self, client: Client) -> None:
        fd = client.sock.fileno()
        del self.clients[fd]
        self.hangups.unwatch(fd)
        if client.timer is not None:
            client.timer.cancel()
            client.timer = None

    def take_all(self) -> list[Client]:
        """Every held client, in arrival order, out of the room."""
        clients = list(self.clients.values())
        for client in clients:
            self.remove(client)
        return clients

    def _leave(self, client: Client, then: Callable[[Client], None]) -> None:
        self.remove(client)
        then(client)


class Waiting:
    """Every client that waits for one backend's wake, and its give-ups."""

    def __init__(self, context: WakeContext) -> None:
        self.config, self.loop, self.record = context.config, context.loop, context.record
        self.wake_timeout, self.to_ledger = context.wake_timeout, context.to_ledger
        self.closed, self.state = context.closed, context.state
        loop = self.loop
        self.room = WaitingRoom(loop, hung_up=self._hung_up, expired=self._give_up)
        # waiting in tasks of their own: a stream with progress, a wake nobody holds a socket for
        self.waiters: dict[Client | Asker, asyncio.Future[bool]] = {}

    def __len__(self) -> int:
        return len(self.room) + len(self.waiters)

    def on_sockets(self) -> int:
        """Those that are clients on a socket: a pre-wake or a press of the page's Wake button
        (an Asker) keeps a wake going, but is nobody waiting to be shown."""
        return len(self.room) + sum(1 for who in self.waiters if not isinstance(who, Asker))

    def hold_limit(self) -> float:
        return self.record.hold_limit(self.loop.time(), self.config.wake_timeout)

    def first(self) -> Client | Asker | None:
        """The client a wake is for, named in its journal line."""
        if self.room:
            return self.room.first()
        return next(iter(self.waiters), None)

    def hold(self, client: Client) -> None:
        if not client.deadline:  # held for the first time: adopted ones keep theirs
            client.arrived = self.loop.time()
            client.deadline = client.arrived + self.hold_limit()
        self.room.add(client)
        log.debug("holding %s while %s wakes", client.peer, self.config.backend)

    async def wait(self, client: Client | Asker) -> bool:
        """True once the backend is ready, False when it did not wake within wake_timeout."""
        ready = self.waiters[client] = self.loop.create_future()
        self.state.shown()
        started = self.loop.time()
        try:
            async with timeout(self.hold_limit()):
                return await asyncio.shield(ready)
        except ASYNC_TIMEOUT:
            self.note_give_up(self.loop.time() - started)
            return False
        finally:
            self.waiters.pop(client, None)
            self.state.shown()

    def ready(self) -> list[Client]:
        """The backend is ready: the held clients, in arrival order, to connect; the others are
        told."""
        self._tell_waiters(True)
        return self.room.take_all()

    def take_held(self) -> list[Client]:
        return self.room.take_all()

    def nobody_listens(self, refused_for: float) -> None:
        """The box answers, but nothing has listened on the port for longer than its server
        needs: every waiting client is told so now (a wrong port, a server on 127.0.0.1 only),
        not after wake_timeout and dozens of magic packets."""
        clients = self.room.take_all()
        if not clients and not self.waiters:
            return
        hint = probes.hint("Connection refused", self.config.backend)
        log.warning("%s (refused for %.0f s): answering %d waiting client(s) with 503 now",
                    hint, refused_for, len(clients) + len(self.waiters))
        for client in clients:
            self._let_go(client, nothing_listens(hint, refused_for),
                         "nothing listens on the backend's port")
        self._tell_waiters(False)
        self.state.shown()

    def note_give_up(self, waited: float) -> None:
        """The journal line and the ledger entry of a wake that gave up: once per wake."""
        if self.record.give_up(self.loop.time()):
            self.to_ledger(ledger.Wake(**self.record.first, signals=self.record.signals,
                                       gave_up_after=round(waited, 1)))
            hint = probes.hint(self.record.last_probe, self.config.backend)
            log.warning(
                "backend %s did not wake within %s (%d wake signals sent, last probe: %s)%s",
                self.config.backend, format_duration(round(waited)),
                self.record.signals, self.record.last_probe or "none yet",
                f": {hint}" if hint else "",
            )

    def close(self) -> None:
        for client in self.room.take_all():
            client.sock.close()

    def _tell_waiters(self, ready: bool) -> None:
        for future in self.waiters.values():
            if not future.done():
                future.set_result(ready)

    def _hung_up(self, client: Client) -> None:
        log.debug("%s hung up while held", client.peer)
        client.sock.close()
        self.closed()
        self.state.shown()

    def _give_up(self, client: Client) -> None:
        now = self.loop.time()
        waited = now - client.arrived
        # read before this give-up is noted: an attempt that failed before this client came
        hint = "; ".join(part for part in (
            probes.hint(self.record.last_probe, self.config.backend),
            self.record.earlier_attempt(now, client.arrived, self.wake_timeout())) if part)
        self.note_give_up(waited)
        self._let_go(client, backend_unavailable(
            str(self.config.backend), round(client.deadline - client.arrived, 1), waited, hint,
            self.record.retry_after()), "its backend did not wake")
        self.state.shown()

    def _let_go(self, client: Client, reply: bytes, why: str) -> None:
        """A held client leaves with `reply` (if it spoke HTTP; else a close), and lingers."""
        try:
            answered = reply_if_http(client, reply)
            log.info("%s %s: %s", "answered with 503" if answered else "closing", client.peer,
                     why)
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            client.sock.close()
            self.closed()
        else:
            linger(self.loop, client.sock, self.closed)
