"""Zero-copy byte splicing between two connected sockets, driven by an asyncio event loop.

Each direction is a Pump: source socket -> pipe -> destination socket with os.splice, so bytes
never enter user space (the design of systemd-socket-proxyd's connection_shovel). Backpressure
comes from the pipe: while it is full the pump stops reading, so a slow reader makes the kernel
hold the data in socket buffers, never the proxy. A source's EOF becomes shutdown(SHUT_WR) on the
destination once the pipe is drained; the connection ends when both directions are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

PIPE_SIZE = 1 << 20  # fs.pipe-max-size's default; an unprivileged user over its quota gets less
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_ROUNDS = 16  # splice rounds per wake-up, so one bulk transfer cannot starve other connections


# emptied pipes of finished connections, kept for the next ones: a new connection's two pipes
# (pipe2, resize, close: a dozen syscalls) were a tenth of its cost to the proxy
SPARE_PIPES = 32
_spare: list[tuple[int, int, int]] = []


def _pipe() -> tuple[int, int, int]:
    if _spare:
        return _spare.pop()
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # EPERM past pipe-user-pages-soft: the default still works
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end, fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)


@dataclass(frozen=True)
class PumpState:
    """One direction of a connection between two processes: bytes in its pipe, whether its
    source has ended, whether it is done (pipe closed, destination shut down)."""

    fill: int
    source_eof: bool
    done: bool
    pipe: tuple[int, int] | None  # read end, write end; None once done


class Pump:
    """One direction of a spliced connection."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, source: int, destination: socket.socket,
        splice: Splice, carried: PumpState | None = None,
        on_first_bytes: Callable[[], None] | None = None,
    ) -> None:
        self.loop, self.source, self.splice = loop, source, splice
        self.on_first_bytes = on_first_bytes  # once, when the source first sends anything
        self.destination_socket, self.destination = destination, destination.fileno()
        self.fill = 0  # bytes in the pipe
        self.pipe_full = False  # the pipe refused more although `fill` says there is room
        self.source_eof = False
        self.done = False
        self.reading = self.writing = False
        if carried is None:
            self.pipe_read, self.pipe_write, self.capacity = _pipe()
        else:  # from before a restart (handover.py): its pipe still holds what was in flight
            self.fill, self.source_eof, self.done = carried.fill, carried.source_eof, carried.done
            self.pipe_read, self.pipe_write = carried.pipe or (-1, -1)
            self.capacity = fcntl.fcntl(self.pipe_write, fcntl.F_GETPIPE_SZ) if carried.pipe else 0

    def freeze(self) -> PumpState:
        """Stop moving bytes, keeping the pipe and what it holds, for another process."""
        self._want(read=False, write=False)
        return PumpState(self.fill, self.source_eof, self.done,
                         None if self.done else (self.pipe_read, self.pipe_write))

    def step(self) -> None:
        """Move what can be moved without blocking, then wait for whichever side must move next."""
        for _ in range(_ROUNDS):
            moved = False
            if not self.source_eof and not self.pipe_full and self.fill < self.capacity:
                try:
                    count = os.splice(self.source, self.pipe_write, self.capacity - self.fill,
                                      flags=_FLAGS)
                except BlockingIOError:
                    # with data already in the pipe, EAGAIN means it ran out of buffer slots
                    # (page-sized pieces); reading again before it drains would spin
                    self.pipe_full = self.fill > 0
                except OSError as error:
                    return self.splice.fail(error, self.source)
                else:
                    if count == 0:
                        self.source_eof = True
                    else:
                        self.fill += count
                        moved = True
                        if self.on_first_bytes is not None:
                            self.on_first_bytes()
                            self.on_first_bytes = None
            if self.fill:
                try:
                    count = os.splice(self.pipe_read, self.destination, self.fill, flags=_FLAGS)
                except BlockingIOError:
                    pass
                except OSError as error:
                    return self.splice.fail(error, self.destination)
                else:
                    self.fill -= count
                    self.pipe_full = False
                    moved = moved or count > 0
            if not moved:
                break
        if self.source_eof and not self.fill:
            return self._finish()
        self._want(
            read=not self.source_eof and not self.pipe_full and self.fill < self.capacity,
            write=self.fill > 0,
        )
        return None

    def _finish(self) -> None:
        self._want(read=False, write=False)
        self.done = True
        if len(_spare) < SPARE_PIPES:  # drained to the last byte: as good as a new one
            _spare.append((self.pipe_read, self.pipe_write, self.capacity))
        else:
            os.close(self.pipe_read)
            os.close(self.pipe_write)
        with contextlib.suppress(OSError):  # the peer is gone: the other direction will notice
            self.destination_socket.shutdown(socket.SHUT_WR)
        self.splice.pump_done()

    def wait_for_source(self) -> None:
        self._want(read=True, write=False)

    def _want(self, *, read: bool, write: bool) -> None:
        if read != self.reading:
            if read:
                self.loop.add_reader(self.source, self.step)
            else:
                self.loop.remove_reader(self.source)
            self.reading = read
        if write != self.writing:
            if write:
                self.loop.add_writer(self.destination, self.step)
            else:
                self.loop.remove_writer(self.destination)
            self.writing = write

    def close(self) -> None:
        self._want(read=False, write=False)
        if not self.done:
            self.done = True
            os.close(self.pipe_read)
            os.close(self.pipe_write)


# a backend socket notices a vanished host within about 30 s instead of hanging forever
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 4
USER_TIMEOUT_MS = 30_000


def tune_backend_socket(sock: socket.socket) -> None:
    """A socket to the backend: non-blocking, no Nagle (SSE tokens go out at once), and a host
    that vanished (suspended by hand, unplugged) noticed within about 30 s."""
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


# errors that mean the backend's host is gone (suspended, unplugged), not one refused request
BACKEND_LOST = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETUNREACH})


class Splice:
    """Both directions between a client and a backend socket; closes both when done or on error."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        backend: socket.socket,
        on_close: Callable[[Splice, OSError | None], None],  # error: the backend host was lost
        carried: tuple[PumpState, PumpState] | None = None,  # from before a restart
        on_first_answer: Callable[[], None] | None = None,  # the backend's first bytes came
    ) -> None:
        self.client, self.backend, self.on_close = client, backend, on_close
        self.closed = self.started = False
        self.fresh = carried is None  # not one going on from before a restart
        up, down = carried or (None, None)
        upstream = Pump(loop, client.fileno(), backend, self, up)
        try:
            downstream = Pump(loop, backend.fileno(), client, self, down, on_first_answer)
        except OSError:  # out of fds for the second pipe: give back the first
            upstream.close()
            raise
        self.pumps = (upstream, downstream)

    def start(self) -> None:
        self.started = True
        upstream, downstream = self.pumps
        if not upstream.done:
            upstream.step()  # the client's request, most often there already
        if self.fresh and not downstream.done:
            downstream.wait_for_source()  # the backend answers only once it has the request
        elif not downstream.done:
            downstream.step()
        self.pump_done()  # both were done already (a connection closing as it was handed over)

    def freeze(self) -> tuple[PumpState, PumpState]:
        """Both directions stopped where they are, for another process to go on (handover.py);
        this one then only closes its copies of the fds."""
        self.closed = True
        up, down = self.pumps
        return up.freeze(), down.freeze()

    def pump_done(self) -> None:
        up, down = self.pumps  # on every connection's path: no generator for two
        if up.done and down.done:
            self._close(None)

    def fail(self, error: OSError, fd: int) -> None:
        """An error on one connection closes that connection only.

        Only an error on the backend's side that says its host vanished is passed on, so that
        the next client goes through the wake path instead of a dead address.
        """
        lost = fd == self.backend.fileno() and error.errno in BACKEND_LOST
        self._close(error if lost else None)

    def close(self) -> None:
        self._close(None)

    def _close(self, backend_lost: OSError | None) -> None:
        if self.closed:
            return
        self.closed = True
        for pump in self.pumps:
            pump.close()
        self.client.close()
        self.backend.close()
        self.on_close(self, backend_lost)
