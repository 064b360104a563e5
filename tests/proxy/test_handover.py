"""A restart of the proxy drops nothing: held clients and spliced connections, with the bytes in
flight in their pipes, go to the service manager's fd store at SIGTERM and come back at the next
start. The manager here does what systemd does with them (LISTEN_FDS and LISTEN_FDNAMES,
FDSTORE=1, FDSTOREREMOVE=1); the real one does it in tests/system/test_install.py's container."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sleepyllama.proxy import handover

from conftest import free_port, wait_for

# what the manager runs: the fds it passes moved to 3, 4, ... as LISTEN_FDS requires, then the proxy
LAUNCH = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "sleepyllama.proxy", *sys.argv[2:]])
"""


class ServiceManager:
    """A listening socket, a notify socket with an fd store, start and SIGTERM."""

    def __init__(self, directory: Path, table: str) -> None:
        self.directory = directory
        self.config = directory / "sleepyllama.toml"
        self.config.write_text(table)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.notify_path = directory / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.store: dict[str, int] = {}
        self.removed: list[str] = []
        self.statuses: list[str] = []
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.notify, 4096, 16)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                if "STATUS" in fields:
                    self.statuses.append(fields["STATUS"])
                if fields.get("FDSTORE") == "1":
                    for fd in fds:
                        self.store[fields.get("FDNAME", "stored")] = fd
                elif fields.get("FDSTOREREMOVE") == "1":
                    name = fields["FDNAME"]
                    self.removed.append(name)
                    if name in self.store:
                        os.close(self.store.pop(name))

    def start(self) -> None:
        with self.lock:
            names = ["proxy.socket", *self.store]
            fds = [self.listener.fileno(), *self.store.values()]
        self.starts += 1
        log = (self.directory / f"proxy-{self.starts}.log").open("wb")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "FDSTORE": "64",
               "LISTEN_FDNAMES": ":".join(names), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, ",".join(map(str, fds)), "--config", str(self.config),
             "-v"], pass_fds=fds, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: "serving" in self.log(), what="the proxy to serve")

    def stop(self) -> None:
        """SIGTERM, as `systemctl restart` sends it, and the wait for the exit."""
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)

    def log(self) -> str:
        return (self.directory / f"proxy-{self.starts}.log").read_text()

    def stored_state(self) -> dict:
        with self.lock:
            fd = self.store[handover.STATE]
        return json.loads(os.pread(fd, 1 << 20, 0))

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.close()
        self.listener.close()
        for fd in self.store.values():
            os.close(fd)


def pattern(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


class RawBackend:
    """A TCP server, no HTTP: "send N" is answered with N bytes; anything else is echoed
    upper-cased. Started when the test says the box is up."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.sent = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            line = conn.recv(100)
            if line.startswith(b"send "):
                data = memoryview(pattern(int(line.split()[1])))
                for start in range(0, len(data), 1 << 16):
                    conn.sendall(data[start:start + (1 << 16)])
                    self.sent += len(data[start:start + (1 << 16)])
            else:
                conn.sendall(line.upper())

    def close(self) -> None:
        self.server.close()


def raw_table(port: int) -> str:
    # no HTTP: readiness is a TCP connect, held clients stay unread
    return (f'[proxy.raw]\nbackend = "127.0.0.1:{port}"\nwake_command = ["true"]\n'
            'wol_interval = "1s"\nhealth_url = ""\nkind = "none"\n')


def read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def manager_for(tmp_path: Path):
    made: list[ServiceManager] = []

    def make(table: str) -> ServiceManager:
        made.append(ServiceManager(tmp_path, table))
        return made[-1]

    yield make
    for manager in made:
        manager.close()


def test_a_spliced_connection_goes_on_with_the_bytes_in_flight(manager_for) -> None:
    port = free_port()
    backend = RawBackend(port)
    try:
        manager = manager_for(raw_table(port))
        manager.start()
        size = 32 << 20  # more than every buffer on the way holds
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # fixed, not autotuned
        client.connect(manager.address)
        client.sendall(f"send {size}\n".encode())
        # not reading: the bytes fill the client's buffer and the proxy's send buffer to it,
        # then the proxy's pipe (the backend's side fills only once the pipe is full)
        downstream = (client.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                      + int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2]))
        wait_for(lambda: backend.sent >= downstream + (1 << 20),
                 what=f"{downstream + (1 << 20)} bytes sent through the proxy")
        manager.stop()
        state = manager.stored_state()
        assert len(state["splices"]) == 1, state
        assert state["splices"][0]["pumps"][1]["fill"] > 0, "nothing was in flight: no test"
        assert "handed 0 held client(s) and 1 connection(s) to systemd" in manager.log()
        manager.start()
        assert read_to_eof(client) == pattern(size)
        assert "took back 0 held client(s) and 1 connection(s)" in manager.log()
        # out of the store at once: its copies would keep the connection open
        wait_for(lambda: not manager.store, what="the store to be emptied")
        assert set(manager.removed) >= {handover.STATE, "sl-s0c", "sl-s0b"}
        client.close()
    finally:
        backend.close()


@pytest.mark.parametrize("sent, wake_on", [
    (b"hello", ""),  # unread in its socket
    (b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 'wake_on = ["GET /x"]\n'),  # read by reception
])
def test_a_held_client_is_held_on_and_served_after_the_restart(manager_for, sent: bytes,
                                                                wake_on: str) -> None:
    port = free_port()
    manager = manager_for(raw_table(port) + wake_on)
    manager.start()
    client = socket.create_connection(manager.address)
    client.sendall(sent)
    wait_for(lambda: "waking" in manager.log(), what="the wake")
    manager.stop()
    assert [entry["peer"] for entry in manager.stored_state()["held"]] == [
        f"127.0.0.1:{client.getsockname()[1]}"]
    manager.start()
    backend = RawBackend(port)  # the box comes up only now
    try:
        assert read_to_eof(client) == sent.upper()  # the bytes read before the restart too
        wait_for(lambda: not manager.store, what="the store to be emptied")
    finally:
        backend.close()
        client.close()


class HeadEchoBackend(RawBackend):
    """Reads a whole request head, then echoes it upper-cased and closes."""

    def _one(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := conn.recv(100)):
                head += chunk
            conn.sendall(head.upper())


@pytest.mark.parametrize("before, after", [
    (b"GET /x HTTP/1.1\r\nHo", b"st: a\r\n\r\n"),  # in the middle of its head
    (b"", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"),  # connected, nothing sent yet
])
def test_a_client_whose_request_is_being_read_goes_on_after_the_restart(
        manager_for, before: bytes, after: bytes) -> None:
    """README promised only that a client in the middle of its request head was closed; back to
    back restarts closed complete requests too, while a fresh process checked them."""
    port = free_port()
    manager = manager_for(raw_table(port) + 'wake_on = ["GET /x"]\n')
    manager.start()
    client = socket.create_connection(manager.address)
    client.sendall(before)
    # accepted, and in reception: not left in the listening socket for the next process
    wait_for(lambda: any("1 connection" in status for status in manager.statuses),
             what="the proxy to count the client")
    manager.stop()
    held = manager.stored_state()["held"]
    # what was read of it goes with it (all of it, or nothing yet: then it is in its socket)
    assert [entry["unread"] for entry in held] == [True]
    assert base64.b64decode(held[0]["prefix"]) in (before, b"")
    manager.start()
    backend = HeadEchoBackend(port)
    try:
        client.sendall(after)
        assert read_to_eof(client) == (before + after).upper()
        wait_for(lambda: not manager.store, what="the store to be emptied")
    finally:
        backend.close()
        client.close()


def test_a_malformed_state_closes_what_came_with_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        handover.parse(b'{"version": 1, "held": [{"fd": "sl-h0"}], "splices": []}')
    with pytest.raises(ValueError):
        handover.parse(b'{"version": 1, "held": [], "splices": [{"client": "a", "backend": "b", '
                       b'"pumps": [{"fill": -1, "eof": false, "done": false, "pipe": null}, {}]}]}')
    with pytest.raises(ValueError):
        handover.parse(b'{"version": 1, "held": [{"fd": "a", "peer": "", "request": "", '
                       b'"agent": "", "prefix": "", "arrived": NaN, "deadline": 1}], "splices": []}')
    left, right = socket.socketpair()
    state = os.memfd_create("state")
    os.write(state, b"[]")

    class Notifier:
        def __init__(self) -> None:
            self.forgotten: list[str] = []

        def forget_stored(self, names) -> None:
            self.forgotten.extend(names)

    notifier = Notifier()
    taken = handover.take_back({handover.STATE: state, "sl-h0": left.detach()}, notifier)  # type: ignore[arg-type]
    assert taken.held == [] and taken.splices == []
    assert sorted(notifier.forgotten) == sorted([handover.STATE, "sl-h0"])
    right.settimeout(5)
    assert right.recv(1) == b""  # closed, not leaked
    right.close()
