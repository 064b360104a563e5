"""The GPU box tells the proxy: one UDP datagram when its server is ready, one right before it
suspends. Hints only: "ready" makes the proxy probe at once (instead of at its next poll),
"sleeping" marks the backend asleep at once (so the next client starts a wake without first
waiting for a connect to fail). A spoofed datagram can cause no more than a probe or a magic
packet, so they carry no secret; they are small, checked for shape, and rate-limited.

  sleepyllama-hint 1 ready llama:8080    (the server and the port it serves on)
  sleepyllama-hint 1 ready llama:8080 cpu   (ready, but on the CPU: its GPU did not come back)
  sleepyllama-hint 1 sleeping
  sleepyllama-hint 1 sleeping poweroff   (how it sleeps, [idle] action: what a wake will cost)
  sleepyllama-hint 1 sleeping suspend:183   (and the watts the sleep saves: the box awake and
                                             idle, less what it draws asleep; the page's kWh)

One more comes from this host only, never from the GPU box: the page's Wake button
(sleepyllama-web) asks the proxy for a wake, naming who pressed it; the proxy takes it from a
local address alone, and the page has checked `wake_from` for the browser's address.

  sleepyllama-hint 1 wake 192.168.1.7

A proxy of an older version reads "sleeping poweroff" as "sleeping", "llama:8080" as a name, and
"suspend:183" as an action it does not know (a suspend): the word after an event is optional in
every version, and may hold a colon. A spoofed saving can only misstate the page's kWh, within
MAX_WATTS. A "ready" hint is acted on only by the proxy whose backend is on that port: a box
with two servers tells each proxy of its own.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from sleepyllama import sleep_actions
from sleepyllama.config import Address

log = logging.getLogger(__name__)

MAGIC = "sleepyllama-hint 1"
MAX_DATAGRAM = 256
MAX_WATTS = 100_000  # a sleep's saving past this is nothing real: the figure is dropped
EVENTS = ("ready", "sleeping", "wake")
_HINT = re.compile(rf"{re.escape(MAGIC)} (ready|sleeping|wake)(?: ([A-Za-z0-9_.:-]{{1,64}}))?"
                   r"(?: (cpu))?\n?")


@dataclass(frozen=True)
class Hint:
    event: str  # "ready", "sleeping" or "wake"
    name: str = ""  # the server that is ready; for "wake", who asked
    on_cpu: bool = False  # ready, but on the CPU: CUDA failed (host/placement.py)
    action: str = ""  # sleeping: suspend, hibernate, ... (sleep_actions.py); "": not said
    port: int | None = None  # ready: the port it serves on; None from a box that does not say
    saving_watts: int | None = None  # sleeping: what the sleep saves; None: the box does not know


def encode(hint: Hint) -> bytes:
    word = _sleeping_word(hint) if hint.event == "sleeping" else (
        f"{hint.name}:{hint.port}" if hint.name and hint.port is not None else hint.name)
    return (f"{MAGIC} {hint.event}{' ' + word if word else ''}"
            f"{' cpu' if hint.on_cpu and hint.name else ''}\n").encode()


def _sleeping_word(hint: Hint) -> str:
    if hint.saving_watts is None:
        return hint.action
    return f"{hint.action or sleep_actions.DEFAULT}:{hint.saving_watts}"


def decode(datagram: bytes) -> Hint | None:
    """The hint in a datagram; None for anything else (too large, not ours, garbled)."""
    if len(datagram) > MAX_DATAGRAM:
        return None
    match = _HINT.fullmatch(datagram.decode("ascii", "replace"))
    if match is None:
        return None
    event, word = match.group(1), match.group(2) or ""
    if event == "sleeping":
        action, _, watts = word.partition(":")
        saving = int(watts) if watts.isdigit() and int(watts) <= MAX_WATTS else None
        return Hint(event, action=action, saving_watts=saving)
    if event == "wake":
        return Hint(event, word)
    name, _, port = word.rpartition(":")
    if name and port.isdigit() and 0 < int(port) < 65536:
        return Hint(event, name, bool(match.group(3)), port=int(port))
    return Hint(event, word, bool(match.group(3)))


def send(proxies: Sequence[Address], hint: Hint) -> None:
    """One datagram to each proxy; never fatal (a hint lost only costs the proxy a poll)."""
    for proxy in proxies:
        try:
            family = socket.AF_INET6 if ":" in proxy.host else socket.AF_INET
            for info in socket.getaddrinfo(proxy.host, proxy.port, family, socket.SOCK_DGRAM)[:1]:
                with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
                    sock.sendto(encode(hint), info[4])
            log.info("told the proxy at %s: %s", proxy, encode(hint)[len(MAGIC) + 1:].decode().strip())
        except OSError as error:
            log.warning("cannot tell the proxy at %s that %s: %s", proxy, hint.event, error)


class RateLimit:
    """At most `burst` hints, refilled at `per_second`: a flood costs one probe a second."""

    def __init__(self, per_second: float = 1.0, burst: int = 3) -> None:
        self.per_second, self.burst = per_second, burst
        self.tokens = float(burst)
        self.at: float | None = None

    def allow(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SenderLimits:
    """A RateLimit for each sender, and one for all of them together: a flood from one
    sender costs another nothing, and spoofed senders, each new, still cost one probe in
    a while. The page's own wake requests are not hints from afar, and pass no limit."""

    def __init__(self, senders: int = 256, overall_per_second: float = 10.0,
                 overall_burst: int = 20) -> None:
        self.senders = senders
        self.buckets: dict[str, RateLimit] = {}  # the most recent sender last
        self.overall = RateLimit(overall_per_second, overall_burst)

    def allow(self, sender: str, now: float) -> bool:
        bucket = self.buckets.pop(sender, None) or RateLimit()
        self.buckets[sender] = bucket
        if len(self.buckets) > self.senders:
            del self.buckets[next(iter(self.buckets))]
        return bucket.allow(now) and self.overall.allow(now)
