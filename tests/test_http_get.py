"""The inference host's HTTP reads: bounded in size and in total time, and a reset is not a
refusal (only a refused connect means the server is not running)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sleepyllama import http_get
from sleepyllama.kinds.base import HttpSource, Look, Unreadable


def serve_once(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            answer(connection)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield port
    listener.close()


@pytest.fixture
def trickling() -> Iterator[int]:
    def answer(connection: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
            try:
                connection.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    yield from serve_once(answer)


@pytest.fixture
def resetting() -> Iterator[int]:
    def answer(connection: socket.socket) -> None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    yield from serve_once(answer)


def test_a_server_trickling_its_answer_is_cut_at_the_timeout(trickling: int) -> None:
    # each byte comes within the socket's timeout: only a bound on the whole answer cuts it
    with pytest.raises(TimeoutError, match="within 1 s"):
        http_get.get(f"http://127.0.0.1:{trickling}/metrics", timeout=1.0)


def test_a_reset_is_unreadable_and_only_a_refusal_is_not_running(resetting: int) -> None:
    source = HttpSource(f"http://127.0.0.1:{resetting}")
    with pytest.raises(Unreadable, match="/props"):
        source.get("/props")
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()

    class Reader(HttpSource):
        def read(self) -> Look:
            self.get("/props")
            return Look()

    assert Reader(f"http://127.0.0.1:{port}").look() == Look(running=False)
