"""sleepyllama-steer: on the GPU box, the always-on host's signed commands (steer.py), one
datagram each: stay awake for a while, stop staying awake, sleep now. Socket-activated by
sleepyllama-steer.socket (UDP 3941); it exits after a minute without a command.

A command is taken once: with a good signature, sent to the address it came in on (this box,
not another that shares the secret), from within a minute of this clock, and not taken before
(what was taken within the minute is kept in the StateDirectory across restarts). The same
datagram again (a retry, the answer lost) is answered as before and not acted on twice. A
command it refuses and could read is answered with why; a flood of anything else is counted,
and said in the journal once a minute. "sleep now" answers
first and then runs the idle check's sleep sequence, which looks at the signals once more: a
busy box refuses, exactly as `sleepyllama sleep-now` does.
"""

from __future__ import annotations

import argparse
import hashlib
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
from sleepyllama import datagrams, files, logs, steer, systemd
from sleepyllama.command_line import listen_address, program_parser
from sleepyllama.config import Config, ConfigError
from sleepyllama.host import state
from sleepyllama.host import stay_awake as staying
from sleepyllama.rejections import Rejections

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
    """Takes each command once: it remembers those it took within steer.WINDOW_MS (kept in
    the StateDirectory across restarts), and answers a retry of one as it answered it."""

    def __init__(self, sock: socket.socket, secret: bytes, state_file: Path,
                 actions: Actions) -> None:
        self.sock, self.secret, self.state_file, self.actions = sock, secret, state_file, actions
        datagrams.ask_for_destinations(sock)
        self.taken, self.floor_ms = self._load()
        self.answers: dict[str, bytes] = {}  # the answers to what this process took
        self.rejections = Rejections(log, "datagram(s)")
        self.stopping = threading.Event()

    def _load(self) -> tuple[dict[str, int], int]:
        """(the commands taken within the window, by their digest; the moment before which
        every command is refused: where the record of what was taken is lost)."""
        now = int(time.time() * 1000)
        try:
            record = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}, 0
        except (OSError, ValueError) as error:
            log.warning("%s is unreadable (%s): refusing commands sent before now",
                        self.state_file, error)
            return {}, now
        if isinstance(record, dict) and "last_ms" in record and "taken" not in record:
            last = record["last_ms"]  # version 1's record: the last command taken
            if isinstance(last, int) and not isinstance(last, bool) and 0 <= last < 10**13:
                return {}, last + 1
        taken = record.get("taken") if isinstance(record, dict) else None
        if isinstance(taken, dict) and all(
                isinstance(key, str) and isinstance(at, int) and not isinstance(at, bool)
                and 0 <= at < 10**13 for key, at in taken.items()):
            return taken, 0
        log.warning("%s holds %r: refusing commands sent before now", self.state_file,
                    str(record)[:80])
        return {}, now

    def _remember(self, key: str, at_ms: int, now_ms: int) -> None:
        self.taken = {k: at for k, at in self.taken.items() if at >= now_ms - steer.WINDOW_MS}
        self.taken[key] = at_ms
        files.write_atomic(self.state_file, json.dumps({"taken": self.taken}).encode(), 0o600)

    def handle(self, datagram: bytes, sender: tuple, received_on: str) -> bool:
        """One datagram received on the address `received_on`; True when the box is to sleep
        now (answered already)."""
        key = hashlib.sha256(datagram).hexdigest()[:32]
        if key in self.answers:
            self.sock.sendto(self.answers[key], sender)  # a retry: its answer again, no second act
            return False
        now_ms = int(time.time() * 1000)
        command = steer.decode(self.secret, datagram, now_ms, received_on)
        if isinstance(command, steer.Command) and command.at_ms < self.floor_ms:
            why = "sent before this box lost its record of the commands it took: send it again"
            command = steer.Refusal(why, steer.answer(self.secret, command, False, why))
        if isinstance(command, steer.Command) and key in self.taken:
            said = "taken already (its first answer was lost)"
            self.sock.sendto(steer.answer(self.secret, command, True, said), sender)
            return False
        if isinstance(command, steer.Refusal):
            self.rejections.note(command.why, sender[0])
            if command.answer is not None:
                self.sock.sendto(command.answer, sender)
            return False
        self._remember(key, command.at_ms, now_ms)
        taken, said, sleep = act(command, self.actions)
        log.info("%s from %s (%s): %s%s", command.name, command.who, sender[0],
                 "" if taken else "refused: ", said)
        answer = steer.answer(self.secret, command, taken, said)
        self.answers = {k: a for k, a in self.answers.items() if k in self.taken}
        self.answers[key] = answer
        self.sock.sendto(answer, sender)
        if sleep:
            self.actions.sleep(command.who)
        return sleep

    def serve(self, idle_exit: float = IDLE_EXIT) -> None:
        """Until idle_exit passes without a command, or stop()."""
        deadline = time.monotonic() + idle_exit
        while not self.stopping.is_set() and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(1.0, deadline - time.monotonic())))
            self.rejections.tick()
            try:
                datagram, sender, received_on = datagrams.receive(self.sock,
                                                                   steer.MAX_DATAGRAM + 1)
            except TimeoutError:
                continue
            self.handle(datagram, sender, received_on)
            deadline = time.monotonic() + idle_exit
        self.rejections.flush()

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
