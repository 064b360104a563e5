"""The way back to the GPU box: "stay awake 3h", "cancel that" and "sleep now" from the
always-on host (its page, its `sleepyllama stay-awake` and `sleep-now`), one UDP datagram each,
answered by one.

The box's hints to the proxy may be spoofed at no cost (hints.py), but these change what the box
does, so each carries an HMAC-SHA256 under a secret both hosts keep (install.sh
--steer-secret-file; a systemd credential for the units, /etc/sleepyllama/steer.secret for
root's commands), the sender's clock in milliseconds, and the address it was sent to. Every box
of a home shares the secret, so that address binds a command to its box: a box takes only what
was sent to the address it received it on. It takes a command with a good MAC, from within
WINDOW of its own clock, once: it remembers what it took within the window (host/steering.py),
so a sender whose clock is ahead locks out no other. A command it refuses but could read (good
MAC) is answered with why; the answer is signed too, over the command it answers.

  sleepyllama-steer 2 stay-awake 10800 1796200000123 192.168.1.50 192.168.1.7 <64 hex>
  sleepyllama-steer 2 ok 1796200000123 staying awake until Wed 11:00 <64 hex>

A version-1 command (an always-on host not yet upgraded) with a good MAC is answered, in
version 1, with "upgrade the sender", and never acted on: it names no box.

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
from sleepyllama.addresses import same_address

VERSION = 2
MAGIC = f"sleepyllama-steer {VERSION}"
COMMANDS = ("stay-awake", "stay-awake-cancel", "sleep-now")
MAX_DATAGRAM = 512
WINDOW_MS = 60_000  # both hosts' clocks agree within this (NTP does far better)
MIN_SECRET = 16  # bytes
MAX_STAY = 7 * 86400  # a week
SECRET_FILE = Path("/etc/sleepyllama/steer.secret")
CREDENTIAL = "steer-secret"

_NAMES = "|".join(COMMANDS)
_COMMAND = re.compile(rf"{re.escape(MAGIC)} ({_NAMES}) (\d{{1,7}}) (\d{{13}}) "
                      r"([0-9A-Fa-f.:]{2,45}) ([A-Za-z0-9_.:-]{1,64}) ([0-9a-f]{64})\n?")
_ANSWER = re.compile(rf"{re.escape(MAGIC)} (ok|refused) (\d{{13}}) ([ -~]{{0,300}}) "
                     r"([0-9a-f]{64})\n?")
_OLD_MAGIC = "sleepyllama-steer 1"
_OLD_COMMAND = re.compile(rf"{re.escape(_OLD_MAGIC)} ({_NAMES}) (\d{{1,7}}) (\d{{13}}) "
                          r"([A-Za-z0-9_.:-]{1,64}) ([0-9a-f]{64})\n?")


@dataclass(frozen=True)
class Command:
    name: str  # one of COMMANDS
    seconds: int  # stay-awake: for how long; else 0
    at_ms: int  # the sender's clock: bounds its age
    who: str  # who asked, for the journal ("192.168.1.7", "home-assistant", a host name)
    box: str = ""  # the address it was sent to: the box it is for

    @property
    def body(self) -> str:
        return f"{MAGIC} {self.name} {self.seconds} {self.at_ms} {self.box} {self.who}"


@dataclass(frozen=True)
class Refusal:
    """A command that is not taken: why (for the journal), and, where it is the secret
    holder's own (a good MAC), the signed answer that tells the sender why."""

    why: str
    answer: bytes | None = None


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def encode(secret: bytes, command: Command) -> bytes:
    return f"{command.body} {_mac(secret, command.body)}\n".encode()


def decode(secret: bytes, datagram: bytes, now_ms: int, received_on: str) -> Command | Refusal:
    """The command in a datagram received on the address `received_on`, or why it is not
    taken. Whether it was taken already is the receiver's to know."""
    if len(datagram) > MAX_DATAGRAM:
        return Refusal("too large")
    text = datagram.decode("ascii", "replace")
    match = _COMMAND.fullmatch(text)
    if match is None:
        return _old(secret, text) or Refusal("not a command")
    name, seconds, at_ms, box, who, mac = match.groups()
    command = Command(name, int(seconds), int(at_ms), who, box)
    if not hmac.compare_digest(_mac(secret, command.body), mac):
        return Refusal("a wrong signature (another secret, or altered)")
    why = _refused(command, now_ms, received_on)
    return Refusal(why, answer(secret, command, False, why)) if why else command


def _refused(command: Command, now_ms: int, received_on: str) -> str:
    if not same_address(command.box, received_on):
        return f"for another box: sent to {command.box}, received on {received_on}"
    skew = command.at_ms - now_ms
    if abs(skew) > WINDOW_MS:
        return (f"sent {abs(skew) / 1000:.0f} s {'ahead of' if skew > 0 else 'behind'} this "
                f"box's clock (at most {WINDOW_MS // 1000} s): set both clocks by NTP")
    if command.name == "stay-awake" and not 0 < command.seconds <= MAX_STAY:
        return f"stay-awake for {command.seconds} s (1 s to a week)"
    return ""


def _old(secret: bytes, text: str) -> Refusal | None:
    """A version-1 command with a good MAC: refused, answered in version 1 so that the older
    sender shows why."""
    match = _OLD_COMMAND.fullmatch(text)
    if match is None:
        return None
    name, seconds, at_ms, who, mac = match.groups()
    if not hmac.compare_digest(_mac(secret, f"{_OLD_MAGIC} {name} {seconds} {at_ms} {who}"), mac):
        return Refusal("a version-1 command with a wrong signature")
    why = "this box runs a newer sleepyllama: upgrade the always-on host (install.sh)"
    body = f"{_OLD_MAGIC} refused {at_ms} {why}"
    return Refusal(f"a version-1 command ({name}) from an older sleepyllama",
                   f"{body} {_mac(secret, body)}\n".encode())


def answer(secret: bytes, command: Command, ok: bool, text: str) -> bytes:
    said = "".join(c if " " <= c <= "~" else "?" for c in text)[:300]
    body = f"{MAGIC} {'ok' if ok else 'refused'} {command.at_ms} {said}"
    # over the command's own MAC too: an answer fits only the command it answers
    return f"{body} {_mac(secret, body + _mac(secret, command.body))}\n".encode()


def read_answer(secret: bytes, datagram: bytes, command: Command) -> tuple[bool, str] | None:
    """(taken, what the box said) for an answer to `command`; None for anything else."""
    match = _ANSWER.fullmatch(datagram[:MAX_DATAGRAM].decode("ascii", "replace"))
    if match is None:
        return None
    verdict, at_ms, text, mac = match.groups()
    body = f"{MAGIC} {verdict} {at_ms} {text}"
    if (int(at_ms) != command.at_ms
            or not hmac.compare_digest(_mac(secret, body + _mac(secret, command.body)), mac)):
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


def _a_moment_of_its_own(now_ms: int) -> int:
    """Two like commands of one process within a millisecond (one button pressed in two
    browsers) would be one datagram, taken once: each gets a moment of its own."""
    with _sending:
        _last_sent[0] = max(now_ms, _last_sent[0] + 1)
        return _last_sent[0]


def send(secret: bytes, box: str, port: int, name: str, seconds: int = 0, who: str = "",
         tries: int = 3, timeout: float = 2.0) -> tuple[bool, str]:
    """Send a command to the box and wait for its answer: (taken, what it said). OSError when
    it does not answer (asleep, no steering there, another secret)."""
    family = socket.AF_INET6 if ":" in box else socket.AF_INET
    address = socket.getaddrinfo(box, port, family, socket.SOCK_DGRAM)[0][4]
    command = Command(name, seconds, _a_moment_of_its_own(int(time.time() * 1000)),
                      who or socket.gethostname().split(".")[0][:64] or "sleepyllama",
                      str(address[0]).split("%")[0])
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
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
