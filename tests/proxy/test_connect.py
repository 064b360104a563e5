"""Connecting a client to the backend and splicing the two (proxy/connect.py), on loopback in
one process: a refused connect, the bytes reception read, and an error of the proxy's own."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from sleepyllama import config
from sleepyllama.proxy.client import Client
from sleepyllama.proxy.connect import Connector

from conftest import free_port
from proxy.stand_ins import NoSignal


def test_out_of_file_descriptors_costs_one_client_its_503_and_leaks_nothing(monkeypatch) -> None:
    """EMFILE while setting up a splice left the client hanging, and leaked its pipe and its
    slot: max_connections shrank and exit_idle never fired."""
    import os

    from sleepyllama.proxy import splice
    from sleepyllama.proxy.backend import Backend

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{port}"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\n').proxy("t")
    closed: list[int] = []
    real_pipe, pipes = splice._pipe, []

    def second_pipe_fails() -> tuple[int, int, int]:
        if pipes:
            raise OSError(errno.EMFILE, "Too many open files")
        pipes.append(1)
        return real_pipe()

    monkeypatch.setattr(splice, "_pipe", second_pipe_fails)

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"),
                          on_close=lambda: closed.append(1))
        ours, theirs = socket.socketpair()
        await loop.sock_sendall(ours, b"GET /v1/models HTTP/1.1\r\nHost: b\r\n\r\n")
        before = len(os.listdir("/proc/self/fd"))
        backend.serve(theirs, "client")
        ours.setblocking(False)
        answer = await asyncio.wait_for(loop.sock_recv(ours, 4096), 10)
        accepted = server.accept()[0]  # the backend's side of the connect, closed by now
        accepted.close()
        after = len(os.listdir("/proc/self/fd"))
        ours.close()
        backend.close_all()
        assert after <= before, (before, after)
        return answer

    answer = asyncio.run(scenario())
    server.close()
    assert answer.startswith(b"HTTP/1.1 503") and b"Too many open files" in answer
    assert closed == [1]


def connector(loop: asyncio.AbstractEventLoop, port: int, told: list) -> Connector:
    return Connector(loop, address=lambda: (socket.AF_INET, ("127.0.0.1", port)),
                     refused=lambda client, why: told.append(("refused", client, why)),
                     lost=lambda error: told.append(("lost", error.errno)),
                     closed=lambda: told.append(("closed",)))


def test_a_refused_connect_hands_the_client_back_untouched() -> None:
    """The box may be asleep: the client goes back to be held, its request still unread."""

    async def scenario() -> tuple[list, bytes]:
        loop = asyncio.get_running_loop()
        told: list = []
        ours, theirs = socket.socketpair()
        ours.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        client = Client(theirs, "client")
        connector(loop, free_port(), told).connect(client)  # nothing listens there
        while not told:
            await asyncio.sleep(0.01)
        unread = theirs.recv(100, socket.MSG_PEEK)
        ours.close()
        theirs.close()
        return [(what, who is client, why) for what, who, why in told], unread

    told, unread = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert told == [("refused", True, "ECONNREFUSED")]
    assert unread == b"GET /health HTTP/1.1\r\n\r\n"


def test_a_client_s_bytes_read_before_go_first_then_the_stream_is_spliced() -> None:
    async def scenario() -> tuple[bytes, bytes, list]:
        loop = asyncio.get_running_loop()
        server = socket.create_server(("127.0.0.1", 0))
        server.setblocking(False)
        told: list = []
        ours, theirs = socket.socketpair()
        client = Client(theirs, "client", prefix=b"GET /v1/models HTTP/1.1\r\n", received=True)
        connection = connector(loop, server.getsockname()[1], told)
        connection.connect(client)
        backend, _ = await loop.sock_accept(server)
        await loop.sock_sendall(ours, b"Host: b\r\n\r\n")  # the rest, from the client's socket
        seen = b""
        while not seen.endswith(b"\r\n\r\n"):
            seen += await loop.sock_recv(backend, 4096)
        await loop.sock_sendall(backend, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        ours.setblocking(False)
        answer = await loop.sock_recv(ours, 4096)
        backend.close()
        ours.close()
        while not told:
            await asyncio.sleep(0.01)
        server.close()
        return seen, answer, told

    seen, answer, told = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen == b"GET /v1/models HTTP/1.1\r\nHost: b\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert told == [("closed",)]


def test_a_client_whose_connect_is_under_way_at_a_restart_is_handed_back_unsent() -> None:
    """Found with 20 restarts in a row under a client every 50 ms (a real systemd): a client
    connected to the backend, but whose connect or first bytes had not gone through when the
    restart came, was neither held nor spliced, and was closed with nothing. It goes back to be
    held by the next process, with what was read of it; nothing of it reached the backend."""

    async def scenario() -> tuple[list[str], bytes, bytes]:
        loop = asyncio.get_running_loop()
        told: list = []
        # a backend that takes no connection yet: a full backlog holds the connect in progress
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(server.getsockname())
            fillers.append(filler)
        ours, theirs = socket.socketpair()
        client = Client(theirs, "client", prefix=b"GET /health HTTP/1.1\r\n\r\n", received=True)
        connection = connector(loop, server.getsockname()[1], told)
        connection.connect(client)
        taken = connection.take_unconnected()
        still = theirs.fileno() != -1
        server.setblocking(False)
        accepted = b""
        for _ in range(9):
            try:
                sock, _ = server.accept()
            except BlockingIOError:
                break
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                accepted += sock.recv(100)
            sock.close()
        for sock in (ours, theirs, server, *fillers):
            sock.close()
        return [taken_client.peer for taken_client in taken], taken[0].prefix if taken else b"", (
            accepted if still else b"closed")

    peers, prefix, reached = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert peers == ["client"] and prefix == b"GET /health HTTP/1.1\r\n\r\n"
    assert reached == b""  # nothing of it went to the backend, and its socket is open


def test_a_prefix_that_fits_goes_at_once_and_the_splice_starts() -> None:
    """The request read by reception is sent as the backend is connected, not a turn of the
    event loop later: nothing is left between connected and spliced for a restart to lose."""

    async def scenario() -> tuple[bool, list]:
        loop = asyncio.get_running_loop()
        server = socket.create_server(("127.0.0.1", 0))
        told: list = []
        ours, theirs = socket.socketpair()
        client = Client(theirs, "client", prefix=b"GET /health HTTP/1.1\r\n\r\n", received=True)
        connection = connector(loop, server.getsockname()[1], told)
        connection.connect(client)
        started = all(splice.started for splice in connection.splices) and bool(
            connection.splices)
        taken = connection.take_unconnected()
        connection.close_all()
        for sock in (ours, server):
            sock.close()
        return started, taken

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == (True, [])
