"""One client of the proxy, from accept to splice or hand-over, and the ways it is let go.

A client is one record all the way through: reception reads its requests into it, the wake
holds it (with its deadline), the connector splices it, a restart hands it over. What it carries
is what each of them, and the journal, needs to know of it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

from sleepyllama.proxy import policy

LINGER = 2.0  # after a 503, read what the client still sends, so close() does not turn into RST


@dataclass(eq=False)
class Client:
    sock: socket.socket
    peer: str  # "host:port" for the journal
    address: str = ""  # its IP address, for wake_from
    arrived: float = 0.0  # loop time, when it was accepted (or held, after a restart)
    deadline: float = 0.0  # loop time: held past this, it is given up on (wake_timeout)
    received: bool = False  # reception met it: its bytes so far are in prefix, not in its socket
    prefix: bytes = b""  # read from it already: the backend gets these first
    request: str = ""  # its request's method and path (no query), for the journal
    agent: str = ""  # its User-Agent: who keeps waking the box (LiteLLM's health checks)
    timer: asyncio.TimerHandle | None = None  # its deadline, while held
    # the first client of a wake: told when the backend's first bytes to it come (wake_record)
    on_first_answer: Callable[[], None] | None = None


@dataclass(eq=False)
class Asker:
    """Who a wake is for when no client waits on a socket for it (a pre-wake, the page's Wake
    button), as the journal and the ledger name a client."""

    peer: str
    request: str = ""
    agent: str = ""
    # a learned pre-wake's: why (learned.py), and when its use is expected (Unix time)
    cause: str = ""
    expected: float | None = None

    def noted(self) -> dict[str, object]:
        """What the ledger's wake entry says of it beyond its peer and request."""
        return {key: value for key, value in (("cause", self.cause),
                                              ("expected", self.expected)) if value}


def reply_if_http(client: Client, reply: bytes) -> bool:
    """Send `reply` to a client whose first bytes (still unread in its socket, or read by
    reception into its prefix) are an HTTP/1.x request; False for any other. OSError passes
    on to the caller, who closes the client either way."""
    first_bytes = client.prefix or client.sock.recv(1024, socket.MSG_PEEK)
    if not policy.speaks_http1(first_bytes):
        return False
    client.sock.send(reply)
    return True


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
