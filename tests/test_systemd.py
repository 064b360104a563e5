"""The one place that talks to systemd (systemd.py): sockets handed over by the real
systemd-socket-activate, sd_notify and the fd store read off a real notify socket, credentials
and D-Bus errors in words."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sleepyllama import systemd

from conftest import free_port, require, wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_listening_sockets_and_stored_fds_are_told_apart_and_not_passed_on() -> None:
    require("systemd-socket-activate")
    # what a child of the program (a wake_command) sees of LISTEN_*: nothing (sd_listen_fds
    # unsets the process's environment; Python's os.environ is a copy taken at start)
    child = ("import subprocess, sys; from sleepyllama import systemd\n"
             "listeners, stored = systemd.inherited_fds()\n"
             "seen = subprocess.run([sys.executable, '-c', 'import os; print(sorted(k for k in"
             " os.environ if k.startswith(\"LISTEN_\")))'], capture_output=True, text=True)\n"
             "print([s.getsockname()[1] for s in listeners], sorted(stored), seen.stdout.strip())\n")
    web, kept = free_port(), free_port()
    activate = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{web}", "-l", f"127.0.0.1:{kept}",
         f"--fdname=web:{systemd.STORED_PREFIX}kept", "-E", "PYTHONPATH",
         sys.executable, "-c", child],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # it runs the program at the first connection
        wait_for(lambda: connects(("127.0.0.1", web)), what="systemd-socket-activate to listen")
        out, err = activate.communicate(timeout=60)
    finally:
        activate.kill()
        activate.wait()
    assert out.strip() == f"[{web}] ['{systemd.STORED_PREFIX}kept'] []", err


def connects(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield sock
    sock.close()


def test_status_goes_once_per_change_and_in_utf_8(notify_socket: socket.socket) -> None:
    notifier = systemd.Notifier()
    notifier.ready("backend awake · 2 connections")
    notifier.status("backend awake · 2 connections")  # unchanged: not sent again
    notifier.status("waking 10.0.0.5")
    assert notify_socket.recv(4096).decode() == "READY=1\nSTATUS=backend awake · 2 connections"
    assert notify_socket.recv(4096).decode() == "STATUS=waking 10.0.0.5"


def test_an_fd_goes_to_the_store_under_its_name(notify_socket: socket.socket,
                                                tmp_path: Path) -> None:
    kept = (tmp_path / "kept").open("w")
    assert systemd.Notifier().store_fds([("sl-client-1", kept.fileno())]) == 1
    message, fds, _flags, _address = socket.recv_fds(notify_socket, 4096, 1)
    try:
        assert message == b"FDSTORE=1\nFDNAME=sl-client-1"
        assert os.path.samestat(os.fstat(fds[0]), os.fstat(kept.fileno()))
    finally:
        for fd in fds:
            os.close(fd)
        kept.close()


def test_without_a_service_manager_nothing_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.Notifier().store_fds([("sl-client-1", 0)]) == 0


def test_a_credential_is_read_where_systemd_put_it(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fallback = tmp_path / "by-hand"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert systemd.credential_or("api-key", fallback) == fallback
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "api-key").write_text("sk-1")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    assert systemd.credential_or("api-key", fallback) == tmp_path / "credentials" / "api-key"
    assert systemd.credential_or("other", None) is None


class BusError(Exception):
    """As pystemd raises a D-Bus error: the bus's message and name kept as bytes."""

    def __init__(self, message: bytes, name: bytes) -> None:
        super().__init__("developer's line")
        self.err_message, self.err_name = message, name


def test_a_d_bus_error_is_said_in_the_bus_s_words() -> None:
    assert systemd.dbus_words(BusError(b"Access denied", b"org.freedesktop.DBus.Error.AccessDenied")
                              ) == "Access denied (org.freedesktop.DBus.Error.AccessDenied)"
    assert systemd.dbus_words(BusError(b"", b"org.freedesktop.login1.NoSuchSession")
                              ) == "org.freedesktop.login1.NoSuchSession"
    assert systemd.dbus_words(OSError("plain")) == "plain"
