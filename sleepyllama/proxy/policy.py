"""What to do with a client while its backend is not known to be ready, decided without I/O.

From the client's address and its request head: answer from the cache (a frontend that only
looks at the model list), refuse (a request or a client that may not wake the box: a scanner,
an uptime checker), or hold the client and wake the box.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sleepyllama import addresses
from sleepyllama.config import ProxyConfig


class Action(enum.Enum):
    ANSWER_FROM_CACHE = "answer from cache"
    UNAUTHORIZED = "unauthorized"
    BAD_REQUEST = "bad request"
    REFUSE = "refuse"
    WAKE = "wake"


def path_of(target: str) -> str:
    """A request target without its query string: what is matched, logged and recorded (a query
    may carry a key: ?api_key=...)."""
    return target.split("?", 1)[0]


@dataclass(frozen=True)
class Head:
    method: str
    target: str  # path and query, as sent
    has_body: bool
    key_ok: bool = True  # it presents the backend's API key, or the backend wants none
    needs_key: bool = False  # the backend, given a key, refuses this request without it

    @property
    def request(self) -> str:
        """"GET /v1/models": what the journal, the ledger and the rules see (no query)."""
        return f"{self.method} {path_of(self.target)}"


def client_may_wake(config: ProxyConfig, address: str) -> bool:
    # not an IP client (a Unix socket) is in no network named
    return addresses.allowed(config.wake_from, address)


def request_may_wake(config: ProxyConfig, head: Head) -> bool:
    if config.wake_on is None:
        return True
    path = path_of(head.target)
    for rule in config.wake_on:
        method, pattern = rule.split(" ", 1)
        if method in ("*", head.method) and fnmatchcase(path, pattern):
            return True
    return False


def decide(config: ProxyConfig, head: Head, address: str, cached: frozenset[str]) -> tuple[Action, str]:
    """(action, reason for the journal) for one request while the backend is not ready."""
    request = head.request
    looks_only = request in (config.answer_while_asleep or ())
    if looks_only and head.has_body:
        return Action.BAD_REQUEST, f"{request} comes with a body, which it does not take"
    if looks_only and request in cached and not head.key_ok:
        # what the backend would say: the model list goes only to those who hold the key
        return Action.UNAUTHORIZED, f"{request} without the backend's API key"
    if looks_only and request in cached:
        return Action.ANSWER_FROM_CACHE, f"{request} answered from the cache"
    if head.needs_key and not head.key_ok:
        # the backend would refuse it: no wake for a 401
        return Action.UNAUTHORIZED, f"{request} without the backend's API key"
    if not client_may_wake(config, address):
        return Action.REFUSE, f"{address} may not wake the backend (wake_from)"
    if not request_may_wake(config, head):
        return Action.REFUSE, f"{request} may not wake the backend (wake_on)"
    return Action.WAKE, f"{request} from {address}"


def needs_parsing(config: ProxyConfig) -> bool:
    """Whether requests must be read at all while the backend is not ready."""
    return bool(config.answer_while_asleep) or config.wake_on is not None or config.wake_progress


# an HTTP/1.x request line's start: a method, a space, a path, an absolute URL or "*"
_REQUEST_START = re.compile(rb"([A-Z]{1,16}) (/|https?://|\*)")
_METHOD_SO_FAR = re.compile(rb"[A-Z]{0,16}")


def speaks_http1(first_bytes: bytes) -> bool | None:
    """True for an HTTP/1.x request, False for anything else (TLS, HTTP/2's "PRI *" preface,
    raw TCP), None while too few bytes have come to tell."""
    match = _REQUEST_START.match(first_bytes)
    if match:
        return match.group(1) != b"PRI"
    if _METHOD_SO_FAR.fullmatch(first_bytes) or (
            _METHOD_SO_FAR.fullmatch(first_bytes[:-1]) and first_bytes.endswith(b" ")):
        return None
    return False
