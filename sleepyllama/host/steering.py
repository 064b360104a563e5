"""sleepyllama-steer: on the GPU box, the always-on host's signed commands (steer.py), one
datagram each: stay awake for a while, stop staying awake, sleep now. Socket-activated by
sleepyllama-steer.socket (UDP 3941); it exits after a minute without a command.

A command is taken once: with a good signature, from within a minute of this clock, and later
than the last one taken (kept in the StateDirectory across restarts). The same datagram again
(a retry, the answer lost) is answered as before and not acted on twice. "sleep now" answers
first and then runs the idle check's sleep sequence, which looks at the signals once more: a
busy box refuses, exactly as `sleepyllama sleep-now` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import files, logs, steer, systemd
from sleepyllama.command_line import listen_address, program_parser
from sleepyllama.config import Config, ConfigError
from sleepyllama.host import state
from sleepyllama.host import stay_awake as staying

log = logging.getLogger("sleepyllama-steer")

IDLE_EXIT = 60.0  # seconds without a command before the program exits (the socket stays)


@dataclass
class Actions:
    """What a command does on the box; the tests give stand-ins."""

    stay: Callable[[float], tuple[bool, str]]
    cancel: Callable[[], str]
    busy: Callable[[], str]  # why the box is busy now; "" when it may sleep
    sleep: Callable[[str], object]  # the sleep sequence, with who asked


def real_actions(config: Config) -> Actions:
    from sleepyllama.host.idle_check import signals_for
    from sleepyllama.host.suspend import last_look, sleep_now

    def signals() -> list:
        return signals_for(config, state.load(state.state_path())[1])

    def busy() -> str:
        return "; ".join(reading.reason for reading in last_look(signals()))

    return Actions(stay=staying.start, cancel=staying.cancel, busy=busy,
                   sleep=lambda who: sleep_now(config, signals(), f"asked by {who} (steer)"))


def act(command: steer.Command, actions: Actions) -> tuple[bool, str, bool]:
    """(taken, what to answer, whether to sleep once answered)."""
    if command.name == "stay-awake":
        held, said = actions.stay(command.seconds)
        return held, said, False
    if command.name == "stay-awake-cancel":
        return True, actions.cancel(), False
    busy = actions.busy()
    if busy:
        return False, f"staying awake: busy: {busy}", False
    return True, "going to sleep: stopping the servers", True


class Receiver:
    def __init__(self, sock: socket.socket, secret: bytes, state_file: Path,
                 actions: Actions) -> None:
        self.sock, self.secret, self.state_file, self.actions = sock, secret, state_file, actions
        self.last_ms = self._load()
        self.last: tuple[bytes, bytes] | None = None  # the last datagram taken, and its answer
        self.stopping = threading.Event()

    def _load(self) -> int:
        try:
            last = json.loads(self.state_file.read_text()).get("last_ms")
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, AttributeError) as error:
            log.warning("%s is unreadable (%s): starting from now", self.state_file, error)
            return int(time.time() * 1000)  # a replay of anything older is refused all the same
        if isinstance(last, int) and not isinstance(last, bool) and 0 <= last < 10**13:
            return last
        log.warning("%s holds %r: starting from now", self.state_file, last)
        return int(time.time() * 1000)

    def handle(self, datagram: bytes, sender: tuple) -> bool:
        """One datagram; True when the box is to sleep now (answered already)."""
        if self.last is not None and datagram == self.last[0]:
            self.sock.sendto(self.last[1], sender)  # a retry: its answer again, no second act
            return False
        command = steer.decode(self.secret, datagram, int(time.time() * 1000), self.last_ms)
        if isinstance(command, str):
            log.warning("ignored a command from %s: %s", sender[0], command)
            return False
        self.last_ms = command.at_ms
        files.write_atomic(self.state_file, json.dumps({"last_ms": self.last_ms}).encode(), 0o600)
        taken, said, sleep = act(command, self.actions)
        log.info("%s from %s (%s): %s%s", command.name, command.who, sender[0],
                 "" if taken else "refused: ", said)
        answer = steer.answer(self.secret, command, taken, said)
        self.last = (datagram, answer)
        self.sock.sendto(answer, sender)
        if sleep:
            self.actions.sleep(command.who)
        return sleep

    def serve(self, idle_exit: float = IDLE_EXIT) -> None:
        """Until idle_exit passes without a command, or stop()."""
        deadline = time.monotonic() + idle_exit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(1.0, deadline - time.monotonic())))
            try:
                datagram, sender = self.sock.recvfrom(steer.MAX_DATAGRAM + 1)
            except TimeoutError:
                continue
            self.handle(datagram, sender)
            deadline = time.monotonic() + idle_exit

    def stop(self) -> None:
        self.stopping.set()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-steer",
        "Take the always-on host's signed commands (stay awake, sleep now) on the GPU box. "
        "Socket-activated by sleepyllama-steer.socket; by hand, on --listen.",
        ["sleepyllama-steer --listen 0.0.0.0:3941"])
    parser.add_argument("--listen", type=listen_address, metavar="HOST:PORT",
                        help="where to listen when run by hand")
    parser.add_argument("--state-file", type=Path, default=None,
                        help="the last command taken (default: $STATE_DIRECTORY/steer.json)")
    return parser.parse_args(argv)


def listening_socket(listen: configuration.Address | None) -> socket.socket:
    inherited, _stored = systemd.inherited_fds()
    datagrams = [sock for sock in inherited if sock.type == socket.SOCK_DGRAM]
    if datagrams:
        datagrams[0].setblocking(True)
        return datagrams[0]
    if listen is None:
        raise SystemExit("sleepyllama-steer: give --listen HOST:PORT (or run it from its socket)")
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((listen.host, listen.port))
    return sock


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-steer", args.verbose)
    try:
        config = configuration.load(args.config)
        secret = steer.read_secret()
    except ConfigError as error:
        log.error("%s", error)
        return configuration.EX_CONFIG
    except (OSError, ValueError) as error:
        log.error("no shared secret: %s", error)
        return configuration.EX_CONFIG
    state_file = args.state_file or state.state_path().with_name("steer.json")
    sock = listening_socket(args.listen)
    systemd.Notifier().ready()
    Receiver(sock, secret, state_file, real_actions(config)).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
