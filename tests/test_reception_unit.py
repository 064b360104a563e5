"""Reception in one process, for what needs its timeouts shortened."""

from __future__ import annotations

import asyncio
import socket
import time

from sleepyllama import config
from sleepyllama.proxy import reception
from sleepyllama.proxy.cache import AnswerCache, Entry
from sleepyllama.proxy.client import Client
from sleepyllama.proxy.reception import Reception


def test_a_client_that_never_reads_its_cached_answers_is_closed(monkeypatch) -> None:
    """While asleep, a client that pipelined requests and never read the answers held its slot
    (and a connection of max_connections) for ever."""
    monkeypatch.setattr(reception, "SEND_TIMEOUT", 0.5, raising=False)
    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:1"\nmac = "ab:cd:ef:01:23:45"\n'
                         ).proxy("t")
    cache = AnswerCache("http://127.0.0.1:1", ("GET /v1/models",), None)
    cache.entries["/v1/models"] = Entry(200, "application/json", b"x" * 60_000, time.time())
    closed: list[int] = []

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        theirs.setblocking(False)
        room = Reception(loop, proxy, cache, AsleepWake(closed), route=lambda client: None)
        room.receive(Client(theirs, "client", "127.0.0.1"))
        ours.sendall(b"GET /v1/models HTTP/1.1\r\nHost: b\r\n\r\n" * 20)  # and never reads
        started = loop.time()
        while not closed and loop.time() - started < 10:  # 20 times SEND_TIMEOUT
            await asyncio.sleep(0.05)
        closed_by_the_proxy = bool(closed)  # before our own close below
        ours.close()
        return closed_by_the_proxy

    assert asyncio.run(scenario()), "the client that never reads still holds its slot"
    assert closed == [1]


class AsleepWake:
    """The wake as reception sees it, of a backend that sleeps."""

    def __init__(self, closed: list[int]) -> None:
        self.closed_count = closed

    async def look(self) -> str:
        return "asleep"

    def closed(self) -> None:
        self.closed_count.append(1)

    def changed(self) -> None:
        pass

    def to_ledger(self, event: str, **fields: object) -> None:
        pass
