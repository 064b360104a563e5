"""While the config is broken: answer each client with a 503 that names the error, and wait for a
fixed file.

Under socket activation, exiting on a config error only starts the proxy again at the next
connection, and after a few of those systemd gives up on the socket (start-limit-hit): the port
stays closed even once the file is fixed. So a socket-activated proxy stays up instead: every
HTTP client hears what is wrong, any other client is closed, and the file is read again every
second. Once it is valid, the proxy serves on the same sockets; nothing needs restarting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from sleepyllama import systemd
from sleepyllama.compat import ASYNC_TIMEOUT
from sleepyllama.config import ConfigError, ProxyConfig
from sleepyllama.proxy.client import linger
from sleepyllama.proxy.policy import speaks_http1
from sleepyllama.proxy.reply import error_reply

log = logging.getLogger("sleepyllama-proxy")

RELOAD_EVERY = 1.0  # seconds between reads of the config file
FIRST_BYTES_TIMEOUT = 2.0  # how long a client may take to say whether it speaks HTTP
MAX_CLIENTS = 256  # answered at once; past that, new clients are closed at once
RETRY_AFTER = 5


def config_error_reply(error: str) -> bytes:
    """HTTP/1.1 503 with Retry-After and an OpenAI-style body naming the config error."""
    return error_reply(503, f"sleepyllama-proxy cannot serve: {error}. Fix the file; the proxy "
                       "reads it again every second and serves as soon as it is valid.",
                       "config_error", RETRY_AFTER)


class Misconfigured:
    def __init__(self, load: Callable[[], ProxyConfig], error: ConfigError,
                 listeners: list[socket.socket], notifier: systemd.Notifier) -> None:
        self.load, self.error, self.listeners, self.notifier = load, str(error), listeners, notifier
        self.clients: set[asyncio.Task[None]] = set()
        self.answered = 0

    async def wait_for_valid_config(self, stop: asyncio.Event) -> ProxyConfig | None:
        """Answer clients until the config is valid (returns it) or `stop` is set (None)."""
        loop = asyncio.get_running_loop()
        log.error("%s; answering every client with 503 until the file is fixed", self.error)
        self._status()
        self.notifier.ready()  # Type=notify: up, though not serving
        for listener in self.listeners:
            listener.setblocking(False)
            loop.add_reader(listener.fileno(), self._accept, listener, loop)
        try:
            while not stop.is_set():
                with contextlib.suppress(*ASYNC_TIMEOUT):
                    await asyncio.wait_for(stop.wait(), RELOAD_EVERY)
                try:
                    config = self.load()
                except ConfigError as error:
                    if str(error) != self.error:
                        self.error = str(error)
                        log.error("%s; still answering 503", self.error)
                        self._status()
                    continue
                log.info("the config is valid now (%d clients were answered 503): serving",
                         self.answered)
                return config
            return None
        finally:
            for listener in self.listeners:
                loop.remove_reader(listener.fileno())
            if stop.is_set():  # stopping; once fixed, clients met before still get their answer
                for task in list(self.clients):
                    task.cancel()

    def _status(self) -> None:
        self.notifier.status(f"config error, answering 503 until fixed: {self.error}")

    def _accept(self, listener: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        try:
            client, _address = listener.accept()
        except OSError:
            return  # gone already, or out of fds: the next readiness tries again
        if len(self.clients) >= MAX_CLIENTS:
            client.close()
            return
        task = loop.create_task(self._answer(client, loop))
        self.clients.add(task)
        task.add_done_callback(self.clients.discard)

    async def _answer(self, client: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        client.setblocking(False)
        try:
            first = await asyncio.wait_for(loop.sock_recv(client, 16), FIRST_BYTES_TIMEOUT)
            if speaks_http1(first):
                await loop.sock_sendall(client, config_error_reply(self.error))
                self.answered += 1
            client.shutdown(socket.SHUT_WR)
        except (OSError, *ASYNC_TIMEOUT):
            client.close()
            return
        linger(loop, client, lambda: None)  # FIN, never RST: the answer is read whole
