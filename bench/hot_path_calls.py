#!/usr/bin/env python3
"""How many Python calls a new connection to a ready backend crosses in the proxy: accept is
the test's, then route, connect and the splice to the end of a small HTTP exchange, counted by
cProfile in one process and divided by the connections. Calls, not time: the figure does not
move with the machine's load, and it moves with every call added to or taken off the path.

  bench/hot_path_calls.py [--connections 500]
  PYTHONPATH=/other/checkout bench/hot_path_calls.py    the same for another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import socket
import sys
import threading

from sleepyllama import config

REQUEST = b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class NoSignal:
    def send(self) -> bool:
        return True

    def describe(self) -> str:
        return "nothing"

    def close(self) -> None:
        pass


def backend_server() -> socket.socket:
    """Answers each connection's request with 200 and closes."""
    server = socket.create_server(("127.0.0.1", 0), backlog=512)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(ANSWER)

    threading.Thread(target=serve, daemon=True).start()
    return server


async def exchange(backend: object, loop: asyncio.AbstractEventLoop) -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    backend.serve(theirs, "client", "127.0.0.1")  # type: ignore[attr-defined]
    await loop.sock_sendall(ours, REQUEST)
    answer = b""
    while chunk := await loop.sock_recv(ours, 4096):
        answer += chunk
    assert answer == ANSWER, answer
    ours.close()


async def run(connections: int) -> float:
    from sleepyllama.proxy.backend import Backend

    server = backend_server()
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{server.getsockname()[1]}"\n'
                         'mac = "ab:cd:ef:01:23:45"\nanswer_while_asleep = []\n').proxy("t")
    loop = asyncio.get_running_loop()
    backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"))
    await exchange(backend, loop)  # the first one wakes (a look): not counted
    for _ in range(20):
        await exchange(backend, loop)  # warm
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(connections):
        await exchange(backend, loop)
    profile.disable()
    backend.close_all()
    server.close()
    stats = pstats.Stats(profile)
    return stats.total_calls / connections  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    args = parser.parse_args(argv)
    calls = asyncio.run(run(args.connections))
    print(f"{calls:.0f} Python calls per new connection to a ready backend "
          f"({args.connections} connections; the test's own side included, the same in every "
          "checkout)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
