"""The splice data path between real TCP sockets on loopback, the event loop in a thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from sleepyllama.proxy.splice import Splice


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        outside = socket.create_connection(server.getsockname())
        inside, _ = server.accept()
    return outside, inside


class Spliced:
    """client <-> [client_in  proxy  backend_out] <-> backend, with the proxy's loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client, client_in = tcp_pair()
        backend_out, self.backend = tcp_pair()
        self.closed = threading.Event()
        self.pump_fills: list[int] = []

        def start() -> None:
            for sock in (client_in, backend_out):
                sock.setblocking(False)
            self.splice = Splice(self.loop, client_in, backend_out, lambda *_: self.closed.set())
            self.splice.start()

        self.loop.call_soon_threadsafe(start)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        # its epoll fd and self-pipe go now, not whenever the collector gets to them: a test
        # that counts fds must not count loops waiting for collection (it did, on Python 3.13)
        self.loop.close()
        self.client.close()
        self.backend.close()


@pytest.fixture
def spliced() -> Iterator[Spliced]:
    pair = Spliced()
    yield pair
    pair.close()


def receive_all(sock: socket.socket) -> tuple[int, str]:
    digest, total = hashlib.sha256(), 0
    while chunk := sock.recv(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


def send_random(sock: socket.socket, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    for _ in range(size >> 20):
        digest.update(block)
        sock.sendall(block)
    sock.shutdown(socket.SHUT_WR)
    return digest.hexdigest()


def test_large_transfers_both_ways_at_once_arrive_intact(spliced: Spliced) -> None:
    size = 64 << 20
    results: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda: results.update(up_sent=send_random(spliced.client, size))),
        threading.Thread(target=lambda: results.update(down_sent=send_random(spliced.backend, size))),
        threading.Thread(target=lambda: results.update(up_got=receive_all(spliced.backend))),
        threading.Thread(target=lambda: results.update(down_got=receive_all(spliced.client))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results["up_got"] == (size, results["up_sent"])
    assert results["down_got"] == (size, results["down_sent"])
    assert spliced.closed.wait(5), "both directions ended but the connection was not closed"


def test_half_close_carries_eof_and_keeps_the_other_way_open(spliced: Spliced) -> None:
    spliced.client.sendall(b"request")
    spliced.client.shutdown(socket.SHUT_WR)  # like `nc -N`: done sending, still reading
    spliced.backend.settimeout(5)
    assert spliced.backend.recv(100) == b"request"
    assert spliced.backend.recv(100) == b"", "the client's EOF did not reach the backend"
    assert not spliced.closed.is_set()
    spliced.backend.sendall(b"response after the client's EOF")
    spliced.backend.shutdown(socket.SHUT_WR)
    spliced.client.settimeout(5)
    assert receive_all(spliced.client)[0] == len(b"response after the client's EOF")
    assert spliced.closed.wait(5)


def test_slow_reader_backpressure_bounds_what_the_proxy_takes(spliced: Spliced) -> None:
    """While the client reads nothing, the backend can only fill the kernel's buffers and one
    pipe; a proxy that buffered in user space would take everything it was sent."""
    spliced.backend.setblocking(False)
    block = b"x" * 65536
    accepted = 0
    stalled_rounds = 0
    while stalled_rounds < 20 and accepted < (512 << 20):
        try:
            accepted += spliced.backend.send(block)
            stalled_rounds = 0
        except BlockingIOError:
            stalled_rounds += 1
            threading.Event().wait(0.05)  # give the proxy's loop a chance to move more
    assert accepted < (64 << 20), f"{accepted} bytes accepted with nobody reading"
    # and once the reader reads, everything arrives
    spliced.backend.setblocking(True)
    spliced.backend.shutdown(socket.SHUT_WR)
    spliced.client.settimeout(10)
    assert receive_all(spliced.client)[0] == accepted


def test_reset_on_one_side_closes_the_connection(spliced: Spliced) -> None:
    spliced.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    spliced.client.close()  # RST
    spliced.backend.settimeout(5)
    try:
        data = spliced.backend.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b"", "the backend side stayed open after the client's reset"
    assert spliced.closed.wait(5)


def test_pipes_of_finished_connections_are_reused_empty_and_never_pile_up() -> None:
    """Each connection's two pipes are kept for the next ones once drained (a tenth of a short
    connection's cost): a reused one must carry only the new connection's bytes, and the spares
    are bounded."""
    from sleepyllama.proxy import splice

    def one_connection(payload: bytes) -> bytes:
        pair = Spliced()
        try:
            pair.client.sendall(payload)
            pair.client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := pair.backend.recv(65536):
                received += chunk
            pair.backend.sendall(payload[::-1])
            pair.backend.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := pair.client.recv(65536):
                answer += chunk
            assert pair.closed.wait(10), "the splice did not end"
            assert answer == payload[::-1], (len(answer), len(payload))
            return received
        finally:
            pair.close()

    fds_before = len(os.listdir("/proc/self/fd"))
    for number in range(3 * splice.SPARE_PIPES):
        payload = f"connection {number} ".encode() * (number * 97 % 5000 + 1)
        assert one_connection(payload) == payload, f"connection {number} got another's bytes"
    grown = len(os.listdir("/proc/self/fd")) - fds_before
    assert len(splice._spare) <= splice.SPARE_PIPES
    assert grown <= 2 * splice.SPARE_PIPES, f"{grown} fds more after the connections ended"
