"""The waiting room: clients held while their backend wakes, in arrival order.

A held client's request stays queued, unread, in its socket (or, when reception.py read it, in
Client.prefix), so a plain reader would fire at once and spin: hang-ups are watched with
EPOLLRDHUP instead. Each held client has a deadline (wake_timeout); what happens then, and on a
hang-up, is the backend's to say.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sleepyllama.proxy import policy

LINGER = 2.0  # after a 503, read what the client still sends, so close() does not turn into RST


@dataclass(eq=False)
class Client:
    sock: socket.socket
    peer: str
    arrived: float
    deadline: float
    timer: asyncio.TimerHandle | None = None
    prefix: bytes = b""  # read from the client already: the backend gets these first
    request: str = ""  # "METHOD /path" when reception read it
    agent: str = ""  # its User-Agent, when reception read it: who keeps waking the box
    address: str = ""  # its IP address, for wake_from, should reception read it later
    # the first client of a wake: told when the backend's first bytes to it come (wake_record)
    on_first_answer: Callable[[], None] | None = None


def reply_if_http(client: Client, reply: bytes) -> bool:
    """Send `reply` to a client whose first bytes (still unread in its socket, or read by
    reception into its prefix) are an HTTP/1.x request; False for any other. OSError passes
    on to the caller, who closes the client either way."""
    first_bytes = client.prefix or client.sock.recv(1024, socket.MSG_PEEK)
    if not policy.speaks_http1(first_bytes):
        return False
    client.sock.send(reply)
    return True


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


def linger(loop: asyncio.AbstractEventLoop, sock: socket.socket, closed: Callable[[], None]) -> None:
    """Read and discard until the client closes (or LINGER passes), then close.

    Closing a socket with unread bytes sends RST instead of FIN, and an RST can make the
    client's kernel discard the 503 it has not read yet.
    """
    fd = sock.fileno()

    def close() -> None:
        loop.remove_reader(fd)
        timer.cancel()
        sock.close()
        closed()

    def drain() -> None:
        try:
            if sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        close()

    timer = loop.call_later(LINGER, close)
    loop.add_reader(fd, drain)
