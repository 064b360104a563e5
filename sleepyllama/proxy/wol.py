"""Waking a sleeping backend: magic packets (or a wake command), repeated while a wake is wanted.

A packet sent while the box is still on its way into suspend is lost, so one packet is not
enough: the wake loop sends one at once and then one every interval for as long as a client
waits. WakeSchedule is the pure rate limit; the senders do the I/O.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import Protocol

import wakeonlan

log = logging.getLogger(__name__)


@dataclass
class WakeSchedule:
    """At most one wake signal per interval per backend, however many clients wait."""

    interval: float
    last_sent: float | None = None

    def due(self, now: float) -> bool:
        return self.last_sent is None or now - self.last_sent >= self.interval

    def seconds_until_due(self, now: float) -> float:
        if self.last_sent is None:
            return 0.0
        return max(0.0, self.last_sent + self.interval - now)

    def mark_sent(self, now: float) -> None:
        self.last_sent = now


class WakeSender(Protocol):
    def send(self) -> None:
        """Send one wake signal without blocking; failures are logged, never raised."""

    def describe(self) -> str: ...


@dataclass
class MagicPacket:
    """A UDP magic packet through the wakeonlan package: no root, no etherwake."""

    mac: str
    broadcast: str = wakeonlan.BROADCAST_IP
    port: int = wakeonlan.DEFAULT_PORT
    source: str | None = None  # a local IP address: picks the interface the packet leaves by

    def send(self) -> None:
        try:
            wakeonlan.wake(self.mac, host=self.broadcast, port=self.port, interface=self.source)
        except OSError as error:
            log.warning("cannot send magic packet for %s to %s:%d: %s",
                        self.mac, self.broadcast, self.port, error)

    def describe(self) -> str:
        via = f" from {self.source}" if self.source else ""
        return f"magic packet for {self.mac} to {self.broadcast}:{self.port}{via}"


class WakeCommand:
    """An argv run instead of magic packets (a smart plug, IPMI, an HTTP call). Never a shell.

    A command still running when the next one is due is not started twice.
    """

    def __init__(self, argv: tuple[str, ...]) -> None:
        self.argv = argv
        self._running: subprocess.Popen[bytes] | None = None

    def send(self) -> None:
        if self._running is not None:
            status = self._running.poll()
            if status is None:
                log.debug("wake command still running; not starting another")
                return
            self._report(status)
        try:
            self._running = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
        except OSError as error:
            self._running = None
            log.warning("cannot run wake_command %s: %s", self.argv[0], error)

    def _report(self, status: int) -> None:
        if status != 0:
            log.warning("wake_command %s exited with status %d", self.argv[0], status)
        self._running = None

    def describe(self) -> str:
        return "wake_command " + " ".join(self.argv)
