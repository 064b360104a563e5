"""The way back to the GPU box: "stay awake 3h", "cancel that" and "sleep now" from the
always-on host (its page, its `sleepyllama stay-awake` and `sleep-now`), one UDP datagram each,
answered by one.

The box's hints to the proxy may be spoofed at no cost (hints.py), but these change what the box
does, so each carries an HMAC-SHA256 under a secret both hosts keep (install.sh
--steer-secret-file; a systemd credential for the units, /etc/sleepyllama/steer.secret for
root's commands) and the sender's clock in milliseconds. The box takes a command only with a
good MAC, from within WINDOW of its own clock, and later than the last it took (kept across
restarts by the receiver): a spoofed, altered or replayed one does nothing. The answer is
signed too, over the command it answers.

  sleepyllama-steer 1 stay-awake 10800 1796200000123 192.168.1.7 <64 hex>
  sleepyllama-steer 1 ok 1796200000123 staying awake until Wed 11:00 <64 hex>

Pure: the shapes, signing and checking. The sender's I/O is send(); the box's is
host/steering.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import systemd

MAGIC = "sleepyllama-steer 1"
COMMANDS = ("stay-awake", "stay-awake-cancel", "sleep-now")
MAX_DATAGRAM = 512
WINDOW_MS = 60_000  # both hosts' clocks agree within this (NTP does far better)
MIN_SECRET = 16  # bytes
MAX_STAY = 7 * 86400  # a week
SECRET_FILE = Path("/etc/sleepyllama/steer.secret")
CREDENTIAL = "steer-secret"

_COMMAND = re.compile(rf"{re.escape(MAGIC)} ({'|'.join(COMMANDS)}) (\d{{1,7}}) (\d{{13}}) "
                      r"([A-Za-z0-9_.:-]{1,64}) ([0-9a-f]{64})\n?")
_ANSWER = re.compile(rf"{re.escape(MAGIC)} (ok|refused) (\d{{13}}) ([ -~]{{0,300}}) "
                     r"([0-9a-f]{64})\n?")


@dataclass(frozen=True)
class Command:
    name: str  # one of COMMANDS
    seconds: int  # stay-awake: for how long; else 0
    at_ms: int  # the sender's clock: orders commands, and bounds their age
    who: str  # who asked, for the journal ("192.168.1.7", "home-assistant", a host name)


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def encode(secret: bytes, command: Command) -> bytes:
    body = f"{MAGIC} {command.name} {command.seconds} {command.at_ms} {command.who}"
    return f"{body} {_mac(secret, body)}\n".encode()


def decode(secret: bytes, datagram: bytes, now_ms: int, last_ms: int) -> Command | str:
    """The command in a datagram, or why it is not taken (for the journal)."""
    if len(datagram) > MAX_DATAGRAM:
        return "too large"
    match = _COMMAND.fullmatch(datagram.decode("ascii", "replace"))
    if match is None:
        return "not a command"
    name, seconds, at_ms, who, mac = match.groups()
    body = f"{MAGIC} {name} {seconds} {at_ms} {who}"
    if not hmac.compare_digest(_mac(secret, body), mac):
        return "a wrong signature (another secret, or altered)"
    if abs(int(at_ms) - now_ms) > WINDOW_MS:
        return f"sent {abs(int(at_ms) - now_ms) / 1000:.0f} s away from this clock"
    if int(at_ms) <= last_ms:
        return "replayed (not later than the last command taken)"
    if name == "stay-awake" and not 0 < int(seconds) <= MAX_STAY:
        return f"stay-awake for {seconds} s (1 s to a week)"
    return Command(name, int(seconds), int(at_ms), who)


def answer(secret: bytes, command: Command, ok: bool, text: str) -> bytes:
    said = "".join(c if " " <= c <= "~" else "?" for c in text)[:300]
    body = f"{MAGIC} {'ok' if ok else 'refused'} {command.at_ms} {said}"
    return f"{body} {_mac(secret, body)}\n".encode()


def read_answer(secret: bytes, datagram: bytes, command: Command) -> tuple[bool, str] | None:
    """(taken, what the box said) for an answer to `command`; None for anything else."""
    match = _ANSWER.fullmatch(datagram[:MAX_DATAGRAM].decode("ascii", "replace"))
    if match is None:
        return None
    verdict, at_ms, text, mac = match.groups()
    body = f"{MAGIC} {verdict} {at_ms} {text}"
    if int(at_ms) != command.at_ms or not hmac.compare_digest(_mac(secret, body), mac):
        return None
    return verdict == "ok", text


def read_secret(path: Path | None = None) -> bytes:
    """The shared secret: systemd's credential, else the file (root's commands). OSError when
    there is none; ValueError when it is too short to be one."""
    source = systemd.credential_or(CREDENTIAL, path or SECRET_FILE)
    secret = source.read_bytes().strip()
    if len(secret) < MIN_SECRET:
        raise ValueError(f"{source}: a secret of at least {MIN_SECRET} bytes is needed "
                         "(install.sh --steer-secret-file makes both hosts share one)")
    return secret


_last_sent = [0]
_sending = threading.Lock()


def _later_than_the_last(now_ms: int) -> int:
    """Two commands of one process within a millisecond (the page's buttons from two
    browsers) get two moments: the box takes only one per moment."""
    with _sending:
        _last_sent[0] = max(now_ms, _last_sent[0] + 1)
        return _last_sent[0]


def send(secret: bytes, box: str, port: int, name: str, seconds: int = 0, who: str = "",
         tries: int = 3, timeout: float = 2.0) -> tuple[bool, str]:
    """Send a command to the box and wait for its answer: (taken, what it said). OSError when
    it does not answer (asleep, no steering there, another secret)."""
    command = Command(name, seconds, _later_than_the_last(int(time.time() * 1000)),
                      who or socket.gethostname().split(".")[0][:64] or "sleepyllama")
    family = socket.AF_INET6 if ":" in box else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        address = socket.getaddrinfo(box, port, family, socket.SOCK_DGRAM)[0][4]
        for _ in range(tries):  # the same datagram again: taken once, answered each time
            sock.sendto(encode(secret, command), address)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data, _sender = sock.recvfrom(MAX_DATAGRAM + 1)
                except TimeoutError:
                    break
                said = read_answer(secret, data, command)
                if said is not None:
                    return said
    raise OSError(f"{box}:{port} did not answer: asleep, not set up for steering "
                  "(install.sh server --steer-secret-file), or another secret")
