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

    def to_ledger(self, entry: object) -> None:
        pass


class LookHangs(AsleepWake):
    """A backend whose quick look is still under way (a probe the box has not answered yet)."""

    def __init__(self, closed: list[int]) -> None:
        super().__init__(closed)
        self.looking = asyncio.Event()

    async def look(self) -> str:
        self.looking.set()
        await asyncio.Event().wait()
        return "awake"


def test_a_client_whose_request_is_being_checked_is_handed_over_with_it() -> None:
    """Back-to-back restarts: a fresh proxy does not know the backend is up, so it reads and
    checks each request first; a client in that step, its request complete, was closed by the
    restart with no answer at all."""
    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:1"\nmac = "ab:cd:ef:01:23:45"\n'
                         ).proxy("t")
    cache = AnswerCache("http://127.0.0.1:1", ("GET /v1/models",), None)
    cache.entries["/v1/models"] = Entry(200, "application/json", b"{}", time.time())
    request = b"GET /v1/models HTTP/1.1\r\nHost: b\r\n\r\nGET /v1/mo"  # and a pipelined part

    async def scenario() -> list[Client]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        wake = LookHangs([])
        room = Reception(loop, proxy, cache, wake, route=lambda client: None)
        room.receive(Client(theirs, "client", "127.0.0.1"))
        ours.sendall(request)
        await asyncio.wait_for(wake.looking.wait(), 10)
        taken = room.take_unanswered()
        room.close_all()
        ours.close()
        return taken

    taken = asyncio.run(scenario())
    assert len(taken) == 1
    assert taken[0].prefix == request and not taken[0].received  # read again, from all of it


def test_a_client_handed_over_mid_request_is_read_on_from_what_came_with_it() -> None:
    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:1"\nmac = "ab:cd:ef:01:23:45"\n'
                         'wake_on = ["POST /v1/*"]\n').proxy("t")
    routed: list[Client] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        room = Reception(loop, proxy, AnswerCache("http://127.0.0.1:1", (), None),
                         AsleepWake([]), route=routed.append)
        room.receive(Client(theirs, "client", "127.0.0.1", prefix=b"POST /v1/chat HTTP/1.1\r\nHo"))
        ours.sendall(b"st: b\r\nContent-Length: 2\r\n\r\n{}")
        started = loop.time()
        while not routed and loop.time() - started < 10:
            await asyncio.sleep(0.01)
        ours.close()

    asyncio.run(scenario())
    assert [(client.request, client.prefix) for client in routed] == [
        ("POST /v1/chat", b"POST /v1/chat HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}")]
