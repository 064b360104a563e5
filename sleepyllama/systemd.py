"""The one place that talks to systemd: socket activation, sd_notify, and (through pystemd) D-Bus."""

from __future__ import annotations

import os
import socket

import pystemd.daemon
import sdnotify


def listen_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed (LISTEN_FDS, from fd 3), or [] when not socket-activated.

    The environment is unset so that child processes (wake_command) do not think they own them.
    """
    count = pystemd.daemon.listen_fds(1)
    first = pystemd.daemon.LISTEN_FDS_START
    return [socket.socket(fileno=fd) for fd in range(first, first + max(count, 0))]


class Notifier:
    """sd_notify through sdnotify; sends STATUS= only when it changes, so callers need not track it."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier()
        self._status = ""

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))
        self._status = status or self._status

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._send(f"STATUS={status}")

    def stopping(self, status: str = "") -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def _send(self, message: str) -> None:
        if self.enabled:
            # sdnotify encodes with latin-1, but systemd reads UTF-8 ("·" would arrive as 0xb7):
            # hand it the UTF-8 bytes spelled as latin-1 characters, which encode back unchanged
            self._notifier.notify(message.encode("utf-8").decode("latin-1"))
