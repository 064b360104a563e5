"""One client of the proxy and the ways it is let go (proxy/client.py), on real sockets: a
reply only to who spoke HTTP, and a linger that reads what the client still sends so that its
503 is not lost to a reset."""

from __future__ import annotations

import asyncio
import socket

from sleepyllama.proxy.client import LINGER, Asker, Client, linger, reply_if_http


def test_a_reply_goes_only_to_a_client_that_spoke_http() -> None:
    for first, answered in ((b"GET /health HTTP/1.1\r\n", True), (b"\x16\x03\x01\x02\x00", False),
                            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False)):
        ours, theirs = socket.socketpair()
        ours.sendall(first)
        assert reply_if_http(Client(theirs, "c"), b"HTTP/1.1 503 x\r\n\r\n") is answered
        try:
            sent = ours.recv(100, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = b""
        assert sent == (b"HTTP/1.1 503 x\r\n\r\n" if answered else b"")
        ours.close()
        theirs.close()


def test_what_reception_read_is_what_decides() -> None:
    ours, theirs = socket.socketpair()
    client = Client(theirs, "c", prefix=b"POST /v1/chat/completions HTTP/1.1\r\n", received=True)
    assert reply_if_http(client, b"HTTP/1.1 503 x\r\n\r\n")  # nothing was left in its socket
    ours.close()
    theirs.close()


def test_a_lingering_socket_is_read_until_the_client_closes_then_closed() -> None:
    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        closed: list[int] = []
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        linger(loop, theirs, lambda: closed.append(1))
        ours.sendall(b"x" * 10_000)  # the rest of a body the proxy never reads
        ours.close()
        while not closed:
            await asyncio.sleep(0.01)
        return closed, theirs.fileno()

    closed, fd = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert closed == [1] and fd == -1  # closed, told once


def test_a_client_that_never_closes_is_closed_after_the_linger() -> None:
    async def scenario() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        closed: list[float] = []
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        started = loop.time()
        linger(loop, theirs, lambda: closed.append(loop.time() - started))
        while not closed:
            await asyncio.sleep(0.05)
        ours.close()
        return closed[0], theirs.fileno()

    waited, fd = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert waited >= LINGER and fd == -1


def test_an_asker_notes_only_what_it_has() -> None:
    assert Asker("the page", "Wake button").noted() == {}
    assert Asker("learned", cause="weekdays about 08:30", expected=1.8e9).noted() == {
        "cause": "weekdays about 08:30", "expected": 1.8e9}
