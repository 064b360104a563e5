"""sleepyllama-server: runs one [server.NAME] command (llama-server, whisper-server, ...) under
systemd, Type=notify.

The command runs as a child in its own process group. Its output passes through to the journal
unchanged, and its last lines are kept: when it dies unasked, its error lines go into our error
line and STATUS ("failed to open GGUF file ..."), not only "exited (status 1)".
READY=1 is sent only once its health URL answers 200, so "started" means "model loaded";
STATUS= follows its activity source (requests in flight, model unloaded), read from endpoints
that never wake a sleeping model (never /slots); WATCHDOG=1 is sent only while it answers.
SIGTERM/SIGINT go to the child, and its whole group is killed after stop_timeout. The wrapper
exits with the child's status, and non-zero whenever the child dies unasked, so
Restart=on-failure restarts it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO
from urllib.parse import urlsplit

from sleepyllama import config as configuration
from sleepyllama import hints, http_get, kinds, ledger, logs, systemd
from sleepyllama.command_line import program_parser
from sleepyllama.config import Address, ConfigError, ServerConfig
from sleepyllama.host import placement
from sleepyllama.host.activity import Look, Unreadable, source_for
from sleepyllama.host.pstate import GpuPower
from sleepyllama.kinds.base import redacted

log = logging.getLogger("sleepyllama-server")

# how often /health is asked while the model loads: a local GET costs next to nothing, and READY
# (with the resume's wake and the proxy's "ready" hint behind it) waits for it; the kind's own
# "ready" line in the server's output asks at once (kinds/: ready_line)
LOADING_POLL = 0.02
READY_POLL = 2.0  # how often health and activity are read once ready
TICK = 0.1  # reaction time to the child's exit and to signals

def health(url: str) -> tuple[bool, bool, str]:
    """(ready, alive, status): a 503 while the model loads is alive but not ready."""
    try:
        response = http_get.get(url, timeout=2.0)
    except http_get.Unreachable:
        return False, False, "starting"
    except TimeoutError:
        return False, False, "health check failed: no answer within 2 s"
    except ValueError as error:
        return False, False, f"health check failed: {error}"
    if response.status == 200:
        return True, True, "ready"
    if response.status == 503:
        return False, True, "loading model"
    return False, True, f"health check answered HTTP {response.status}"


_LLAMA_CPP_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [A-Z] +")  # "0.00.012.724 E "
_ERROR_LINE = re.compile(r"(^|\s)(E|ERROR|FATAL)\s|error|failed|fatal|cannot|can't|no such|"
                         r"not found|denied|invalid", re.IGNORECASE)


def why_it_died(lines: Sequence[str], most: int = 3) -> str:
    """The error lines among a server's last lines of output, as one line: the first ones (the
    cause, usually) and the last one (its conclusion); else its last lines."""
    cleaned = [_LLAMA_CPP_PREFIX.sub("", line).strip() for line in lines if line.strip()]
    errors = [line for line in cleaned if _ERROR_LINE.search(line)]
    if len(errors) > most:
        errors = [*errors[: most - 1], errors[-1]]
    return " | ".join(errors or cleaned[-most:])


class OutputTail:
    """Passes the child's output on to ours (the journal) line by line, keeping the last lines
    and showing each to `listener` (where its model went: host/placement.py)."""

    def __init__(self, pipe: IO[bytes], out: IO[bytes], keep: int = 40,
                 listener: Callable[[str], None] | None = None) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.listener = listener
        self.thread = threading.Thread(target=self._pump, args=(pipe, out), daemon=True)
        self.thread.start()

    def _pump(self, pipe: IO[bytes], out: IO[bytes]) -> None:
        with pipe:
            while line := pipe.readline(65536):
                out.write(line)
                out.flush()
                text = line.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(text)
                if self.listener is not None:
                    self.listener(text)

    def last(self, timeout: float = 2.0) -> list[str]:
        """The last lines, once the child's pipe has closed (or after `timeout`)."""
        self.thread.join(timeout)
        return list(self.lines)


def ready_status(look: Look) -> str:
    """STATUS= once ready: "ready · 1 request in flight", "ready · model unloaded (...)", and for
    a server of several models "ready · 1 of 3 models loaded · 1 request in flight"."""
    parts = ["ready"] + ([look.models] if look.models else [])
    if look.loading:
        parts.append("loading a model")
    elif look.unloaded:
        parts.append(look.unloaded)
    elif look.in_flight is not None:
        parts.append(f"{look.in_flight} request{'' if look.in_flight == 1 else 's'} in flight")
    return " · ".join(parts)


def exit_status(returncode: int) -> int:
    """A shell's convention: a child killed by signal N exits 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    def __init__(self, config: ServerConfig, notifier: systemd.Notifier,
                 gpu_power: GpuPower | None = None, proxies: Sequence[Address] = ()) -> None:
        self.config, self.notifier, self.gpu_power = config, notifier, gpu_power
        self.proxies = proxies  # told when the server is ready ([notify] proxies)
        # the port it serves on, in its hint: each proxy acts on the server behind its backend
        self.port = urlsplit(config.health_url).port
        self.source = source_for(config, timeout=2.0, gentle=True)
        directory = systemd.state_directory()
        self.placement_file = directory / "placement.json" if directory else None
        kind = kinds.get(config.activity)
        self.placement = placement.Placement(
            kind, config.command,
            placement.load(self.placement_file, config.name) if self.placement_file else None)
        self.ready_line = kind.ready_line
        self.look_now = threading.Event()  # the server said it may serve: ask without waiting
        self.started = 0.0  # CLOCK_MONOTONIC when the child was started
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None
        self.kill_at: float | None = None
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_every = watchdog_usec / 2e6 if watchdog_usec else None

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.kill_at = time.monotonic() + self.config.stop_timeout
            self.notifier.stopping(f"stopping {self.config.name}")
            log.info("%s received: stopping %s (killing it after %.0f s)",
                     signal.Signals(signum).name, self.config.name, self.config.stop_timeout)
        if self.child is not None:
            self._signal_group(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.child.pid, signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        log.info("starting %s: %s", self.config.name, " ".join(redacted(self.config.command)))
        if health(self.config.health_url)[1]:
            # READY would be another server's: its /health answers before ours has started
            why = (f"{self.config.health_url} answers before {self.config.name} has started: "
                   "another server holds its port; give this one another --port")
            log.error("%s", why)
            self.notifier.status(why)
            return 1
        self.started = time.monotonic()
        try:
            # its own process group: a stop reaches every process it forked (CUDA helpers, ...)
            self.child = subprocess.Popen(self.config.command, start_new_session=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT)
        except OSError as error:
            log.error("cannot start %s: %s", self.config.command[0], error)
            self.notifier.status(f"cannot start {self.config.command[0]}: {error.strerror}")
            return 1
        assert self.child.stdout is not None
        self.output = OutputTail(self.child.stdout, sys.stderr.buffer, listener=self._heard)
        if self.stop_signal is not None:  # a signal that came before the child existed
            self._signal_group(signal.SIGTERM)
        try:
            return self._supervise()
        finally:
            if self.gpu_power is not None:
                self.gpu_power.set_idle(False)  # never leave a GPU forced into P8

    def _supervise(self) -> int:
        assert self.child is not None
        ready, next_look, last_ping = False, 0.0, 0.0
        self.notifier.status("loading model")
        while True:
            returncode = self.child.poll()
            if returncode is not None:
                return self._child_exited(returncode)
            now = time.monotonic()
            if self.kill_at is not None and now >= self.kill_at:
                log.warning("%s did not stop within %.0f s: killing its process group",
                            self.config.name, self.config.stop_timeout)
                self._signal_group(signal.SIGKILL)
                self.kill_at = None
            if self.stop_signal is None and now >= next_look:
                healthy, alive, status = self._look(ready)
                if healthy and not ready:
                    ready = True
                    healthy, alive, status = self._look(ready)  # with its activity, for STATUS
                    log.info("%s is ready: %s", self.config.name, status)
                    self._record_ready(now)
                    on_cpu = self._judge_placement().startswith("on the CPU")
                    self.notifier.ready(status)
                    # a proxy holding a chat with wake progress tells its user
                    hints.send(self.proxies, hints.Hint("ready", self.config.name, on_cpu,
                                                        port=self.port))
                self.notifier.status(status)
                # a server that answers, even 503 while it loads, is alive; silence is a hang
                if alive and self.watchdog_every and now - last_ping >= self.watchdog_every:
                    self.notifier.watchdog()
                    last_ping = now
                next_look = now + (READY_POLL if ready else LOADING_POLL)
            # until the next look, or at once when the server says it may serve now
            if self.look_now.wait(max(0.0, min(TICK, next_look - time.monotonic()))):
                self.look_now.clear()
                if not ready:
                    next_look = 0.0

    def _record_ready(self, now: float) -> None:
        """Into the host's ledger, where the unit's StateDirectory= says (not when run by hand)."""
        directory = systemd.state_directory()
        if directory is not None:
            ledger.append(directory / "ledger.jsonl", ledger.ServerReady(
                name=self.config.name, load_seconds=round(now - self.started, 1)))

    def _heard(self, line: str) -> None:
        """Each line of the server's output (in the output thread): where its model went, and
        whether it says it may serve now."""
        self.placement.feed(line)
        if self.ready_line is not None and self.ready_line.search(line):
            self.look_now.set()

    def _judge_placement(self) -> str:
        """Once ready: a model on the CPU that should be on the GPU is said everywhere."""
        problem = self.placement.problem()
        if problem:
            log.warning("%s is ready %s. %s", self.config.name, problem, placement.FIX)
            directory = systemd.state_directory()
            if directory is not None:
                ledger.append(directory / "ledger.jsonl",
                              ledger.ServerDegraded(name=self.config.name, problem=problem))
        elif self.placement.layers and self.placement.layers[0] > 0 and self.placement_file:
            placement.remember(self.placement_file, self.config.name, self.placement.layers)
        return problem

    def _look(self, ready: bool) -> tuple[bool, bool, str]:
        """(healthy, alive, STATUS line). Before READY only health counts; after, activity too."""
        healthy, alive, status = health(self.config.health_url)
        if not ready:
            return healthy, alive, status
        if not healthy:
            return healthy, alive, f"not answering: {status}"
        try:
            look = self.source.look()
        except Unreadable as error:
            return True, True, f"ready · activity unreadable: {error}"
        if self.gpu_power is not None:
            self.gpu_power.set_idle(bool(look.unloaded) or look.in_flight == 0)
        problem = self.placement.problem()
        status = ready_status(look)
        return True, True, f"ready {problem}{status[len('ready'):]}" if problem else status

    def _child_exited(self, returncode: int) -> int:
        name = self.config.name
        if self.stop_signal is not None:
            log.info("%s stopped (%s)", name, describe_exit(returncode))
            self.notifier.status(f"stopped ({describe_exit(returncode)})")
            # our own SIGTERM (or the SIGKILL after stop_timeout) is a clean stop
            return 0 if returncode in (0, -signal.SIGTERM, -signal.SIGKILL) else exit_status(
                returncode)
        why = why_it_died(self.output.last())
        log.error("%s exited unasked (%s)%s", name, describe_exit(returncode),
                  f": {why}" if why else "")
        self.notifier.status(f"exited unasked ({describe_exit(returncode)})" +
                             (f": {why}" if why else ""))
        return exit_status(returncode) or 1  # unasked: always a failure, so systemd restarts it


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"status {returncode}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-server",
        "Run a [server.NAME] command (llama-server and the like) for systemd: READY only once "
        "its health URL answers 200, STATUS from its activity (never waking a sleeping model), "
        "signals passed on.",
        ["sleepyllama-server --instance llama",
         "systemctl start sleepyllama-server@llama   (the usual way; returns once the model is "
         "loaded)"])
    parser.add_argument("--instance", metavar="NAME", required=True,
                        help="which [server.NAME] table to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-server", args.verbose)
    try:
        config = configuration.load(args.config)
        server = config.server(args.instance)
    except ConfigError as error:
        log.error("%s", error)
        return configuration.EX_CONFIG
    gpu_power = GpuPower.open() if server.pstate == "auto" else None
    return Supervisor(server, systemd.Notifier(), gpu_power, config.notify.proxies).run()


if __name__ == "__main__":
    sys.exit(main())
