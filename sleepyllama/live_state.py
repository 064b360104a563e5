"""A proxy's state as it is now, as it crosses from the proxy (proxy/live.py writes it, to
NAME.live.json in its StateDirectory) to the page (dashboard/, which reads it): one record, its
version, its states, its writing and its checked reading, in one place both import. Neither side
needs the other's code: the page imports nothing of the proxy.

Everything read back is checked for shape and range: a field that fails is dropped (a number
out of range, a word not of STATES), and a document of another shape or version says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from sleepyllama import files, sleep_actions

VERSION = 1


class State(str, Enum):
    """What a proxy's backend is now (proxy/wake_state.py moves it, by its table)."""
    ASLEEP = "asleep"  # the latest evidence: no answer, a failed connect, its "sleeping" hint
    WAKING = "waking"  # a wake signal of the wake under way went out
    AWAKE = "awake"  # the latest evidence: its ready check answered
    DID_NOT_WAKE = "did-not-wake"  # the last wake gave up on a client, and nothing answered since
    UNKNOWN = "unknown"  # not seen yet, and not said asleep


# the words for the page, Prometheus and Home Assistant (dashboard/); every reader reads these
STATES = tuple(state.value for state in State)
PREWAKE_MODES = ("off", "learned")
MAX_LEARNED, MAX_WORDS = 14, 120  # habits kept, and characters of each
LATEST = 1e11  # a time past this (the year 5138) is nothing real


@dataclass(frozen=True)
class Prewakes:
    """Learned pre-wakes (proxy/prewaker.py): on or off, the next one and its cause, and the
    habits learned (shown while off too: what turning them on would do)."""
    mode: str = "off"
    next: float | None = None  # Unix time
    cause: str = ""
    learned: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveState:
    name: str
    backend: str
    listen: tuple[str, ...]  # where its UDP hint sockets are ("host:port"): the Wake button's
    pid: int
    running: bool
    state: str  # one of STATES
    since: float | None  # Unix time the state began
    waking_since: float | None = None
    signals: int = 0  # wake signals sent in the wake under way
    clients_waiting: int = 0
    typical_wake: float | None = None  # the median of its last wakes, first signal to ready
    asleep_as: str = ""  # how the box said it sleeps (sleep_actions.py); "": it never said
    last_ready: float | None = None  # when the backend last answered its ready check
    prewakes: Prewakes | None = field(default=None)

    def to_json(self) -> dict:
        document = {"version": VERSION, **asdict(self), "listen": list(self.listen)}
        prewakes = document.pop("prewakes")
        if prewakes is not None:
            document["prewake"] = {**prewakes, "learned": list(prewakes["learned"])}
        return document


def _number(value: object, low: float = 0.0, high: float = LATEST) -> float | None:
    return files.within(value, low, high)


def _count(value: object) -> int:
    number = _number(value, 0, 1e6)
    return int(number) if number is not None else 0


def _text(value: object) -> str:
    return value[:MAX_WORDS] if isinstance(value, str) else ""


def read_prewakes(prewake: object) -> Prewakes | None:
    if not isinstance(prewake, dict):
        return None
    learned = prewake.get("learned")
    return Prewakes("learned" if prewake.get("mode") == "learned" else "off",
                    _number(prewake.get("next")), _text(prewake.get("cause")),
                    tuple(said[:MAX_WORDS] for said in learned[:MAX_LEARNED]
                          if isinstance(said, str)) if isinstance(learned, list) else ())


def read(document: object) -> tuple[LiveState | None, str]:
    """The state a live file holds, its fields checked (one that fails reads as absent, a
    state not of STATES as "unknown"), and what was wrong ("" if nothing); None for a document
    of another shape or version."""
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return None, "its live state has an unknown shape"
    state = document.get("state")
    listen = document.get("listen")
    asleep_as = document.get("asleep_as")
    found = LiveState(
        name=_text(document.get("name")), backend=_text(document.get("backend")),
        listen=tuple(listen[:1]) if isinstance(listen, list) and listen
        and isinstance(listen[0], str) and len(listen[0]) < 100 else (),
        pid=_count(document.get("pid")), running=document.get("running") is True,
        state=state if state in STATES else "unknown",
        since=_number(document.get("since")),
        waking_since=_number(document.get("waking_since")),
        signals=_count(document.get("signals")),
        clients_waiting=_count(document.get("clients_waiting")),
        typical_wake=_number(document.get("typical_wake"), 0, 86400),
        asleep_as=asleep_as if isinstance(asleep_as, str)
        and asleep_as in sleep_actions.ACTIONS else "",
        last_ready=_number(document.get("last_ready")),
        prewakes=read_prewakes(document.get("prewake")))
    return found, "" if state in STATES else f"its live state says {str(state)[:20]!r}"
