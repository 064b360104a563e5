"""Waking a sleeping backend: magic packets (or a wake command), repeated while a wake is wanted.

A packet sent while the box is still on its way into suspend is lost, so one packet is not
enough: the wake loop sends one at once and then one every interval for as long as a client
waits. WakeSchedule is the pure rate limit; the senders do the I/O.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import wakeonlan

from sleepyllama.config import ProxyConfig

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
    def send(self) -> bool:
        """Send one wake signal without blocking; False when none went out (logged, never
        raised)."""

    def describe(self) -> str: ...

    def close(self) -> None:
        """Leave nothing running (the proxy is stopping)."""


@dataclass
class MagicPacket:
    """A UDP magic packet through the wakeonlan package: no root, no etherwake."""

    mac: str
    broadcast: str = wakeonlan.BROADCAST_IP
    port: int = wakeonlan.DEFAULT_PORT
    source: str | None = None  # a local IP address: picks the interface the packet leaves by

    def send(self) -> bool:
        try:
            wakeonlan.wake(self.mac, host=self.broadcast, port=self.port, interface=self.source)
        except OSError as error:
            log.warning("cannot send magic packet for %s to %s:%d: %s",
                        self.mac, self.broadcast, self.port, error)
            return False
        return True

    def close(self) -> None:
        pass

    def describe(self) -> str:
        via = f" from {self.source}" if self.source else ""
        return f"magic packet for {self.mac} to {self.broadcast}:{self.port}{via}"


MAX_OUTPUT = 4096  # of a wake command's output, for its warning; the rest is never read


class WakeCommand:
    """An argv run instead of magic packets (a smart plug, IPMI, an HTTP call). Never a shell.

    A command still running when the next one is due is not started twice; one that has run
    longer than `timeout` (the wake interval) is hung: its whole process group is killed and a
    new one started, so one hung `curl` never ends the waking. Its output goes to a pipe of
    which only the first MAX_OUTPUT bytes are ever read (a chatty command blocks on a full pipe
    and is then killed as hung), never to the journal.
    """

    def __init__(self, argv: tuple[str, ...], timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.argv, self.timeout, self.clock = argv, timeout, clock
        self._running: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def send(self) -> bool:
        if self._running is not None:
            status = self._running.poll()
            if status is None:
                ran = self.clock() - self._started
                if self.timeout is None or ran < self.timeout:
                    log.debug("wake command still running; not starting another")
                    return False
                log.warning("wake_command %s still runs after %.0f s: killed, starting it again",
                            self.argv[0], ran)
                self._kill()
            else:
                self._report(status)
        try:
            self._running = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        except OSError as error:
            self._running = None
            log.warning("cannot run wake_command %s: %s", self.argv[0], error)
            return False
        os.set_blocking(self._running.stdout.fileno(), False)  # type: ignore[union-attr]
        self._started = self.clock()
        return True

    def _kill(self) -> None:
        assert self._running is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._running.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._running.wait(timeout=1)  # reaped: no zombie
        self._close()

    def _report(self, status: int) -> None:
        if status != 0:
            output = self._output()
            log.warning("wake_command %s exited with status %d%s", self.argv[0], status,
                        f": {output}" if output else "")
        self._close()

    def _output(self) -> str:
        assert self._running is not None and self._running.stdout is not None
        try:
            data = self._running.stdout.read(MAX_OUTPUT) or b""
        except (OSError, ValueError):
            data = b""
        return " ".join(data.decode("utf-8", "replace").split())[:300]

    def _close(self) -> None:
        if self._running is not None and self._running.stdout is not None:
            self._running.stdout.close()
        self._running = None

    def close(self) -> None:
        """Kill a command still running (the proxy is stopping)."""
        if self._running is not None and self._running.poll() is None:
            self._kill()
        elif self._running is not None:
            self._close()

    def describe(self) -> str:
        return "wake_command " + " ".join(self.argv)


def make_sender(config: ProxyConfig) -> WakeSender:
    """What wakes this proxy's backend: its wake_command, else magic packets to its mac."""
    if config.wake_command:
        return WakeCommand(config.wake_command, timeout=config.wol_interval)
    assert config.mac is not None  # config.py requires mac unless wake_command is set
    return MagicPacket(config.mac, config.broadcast, config.wol_port, config.wol_source)
