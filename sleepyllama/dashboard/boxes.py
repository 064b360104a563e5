"""Each GPU box as the page shows it, from what its proxy keeps in its StateDirectory: the live
state (NAME.live.json, proxy/live.py), the ledger (NAME.ledger.jsonl: wakes, give-ups, answers
from the cache) and the kept answers (NAME.answers.json: the models it lists while asleep).

Everything read back is checked for shape and range: a file that is missing, torn or wrong
reads as "unknown", with the reason, and never stops the page. `box()` is pure.
"""

from __future__ import annotations

import binascii
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sleepyllama import files, history, kept_answers, ledger, live_state
from sleepyllama.config import EnergyConfig, ProxyConfig

log = logging.getLogger(__name__)

MAX_FILE = 1 << 20  # a live file is a few hundred bytes; an answers file a few KiB
MAX_MODELS = 50
DAYS = 7


@dataclass
class LastWake:
    at: float
    cause: str  # "192.168.1.20:5123 POST /v1/chat/completions (User-Agent)"
    outcome: str  # "ready after 8.3s" or "gave up after 180s"


@dataclass
class Box:
    name: str
    backend: str
    state: str  # one of live_state.STATES
    since: float | None = None  # Unix time the state began, as far as the proxy knows
    waking_since: float | None = None
    last_ready: float | None = None  # when the backend last answered its ready check
    signals: int = 0
    clients_waiting: int = 0
    typical_wake: float | None = None  # the median of its last wakes, first signal to ready
    running: bool = False  # the proxy process is up (socket activation may have let it exit)
    problem: str = ""  # why the state is unknown: a file missing or unreadable
    last_wake: LastWake | None = None
    models: list[str] = field(default_factory=list)
    wakes_total: int = 0
    give_ups_total: int = 0
    cache_answers_total: int = 0
    wake_seconds: list[float] = field(default_factory=list)  # each successful wake's
    wake_times: list[float] = field(default_factory=list)  # when each successful wake began
    hint_address: str = ""  # where the proxy takes the Wake button's datagram
    days: list[history.Day] = field(default_factory=list)  # the last DAYS, oldest first
    # what its sleeps saved, from what the box said each saves (its "sleeping" hint); None: it
    # never said (a box that has no power figure yet, or of an older version)
    kwh_saved: float | None = None  # in the last DAYS
    kwh_saved_total: float | None = None  # as far back as the ledger goes
    asleep_seconds_total: float = 0.0  # the sleeps the box told of, as far back as the ledger goes
    kwh_counted_under: str = ""  # another proxy of the same box, whose figure counts its sleeps
    staying_until: float | None = None  # a stay-awake the page asked, in effect until then
    asleep_as: str = ""  # how the box said it sleeps (sleep_actions.py); "": it never said
    # learned pre-wakes (proxy/prewaker.py): "learned" or "off", the next one and its cause,
    # and the habits learned (shown while off too: what turning them on would do)
    prewake: str = "off"
    next_prewake: float | None = None
    next_prewake_cause: str = ""
    learned: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)


def _number(value: object, low: float = 0.0, high: float = 1e11) -> float | None:
    return files.within(value, low, high)


def checked_live(document: object) -> tuple[dict, str]:
    """The Box fields of a live file (live_state.py: each checked there), and what was wrong
    ("" if nothing)."""
    live, wrong = live_state.read(document)
    if live is None:
        return {}, wrong
    found = {"state": live.state, "since": live.since, "waking_since": live.waking_since,
             "last_ready": live.last_ready, "signals": live.signals,
             "clients_waiting": live.clients_waiting, "typical_wake": live.typical_wake,
             "running": live.running, "asleep_as": live.asleep_as}
    if live.listen:
        found["hint_address"] = live.listen[0]
    if live.prewakes is not None:
        found.update(prewake=live.prewakes.mode, next_prewake=live.prewakes.next,
                     next_prewake_cause=live.prewakes.cause, learned=list(live.prewakes.learned))
    return found, wrong


def models_of(answers: object) -> list[str]:
    """The model ids in the kept answer to /v1/models (or /api/tags, Ollama's), as the proxy
    keeps it (kept_answers.py, whose checks it passes through)."""
    if not isinstance(answers, dict) or not isinstance(answers.get("entries"), dict):
        return []
    for target, key, name in (("/v1/models", "data", "id"), ("/api/tags", "models", "name")):
        try:
            listed = json.loads(kept_answers.entry(answers["entries"].get(target)).body).get(key)
        except (ValueError, binascii.Error, AttributeError):
            continue
        if isinstance(listed, list):
            found = [str(item[name])[:200] for item in listed
                     if isinstance(item, dict) and isinstance(item.get(name), str)]
            if found:
                return found[:MAX_MODELS]
    return []


def sleeps(entries: Sequence[ledger.Entry]) -> list[history.Sleep]:
    """The box's sleeps as its proxy saw them: from a "sleeping" hint (box-sleeping) to the
    moment the box was seen up again (ledger.ends_a_sleep), or open, counted to now, while it
    was not. Ending a sleep where it was seen up, never earlier, keeps the total from going
    down between two reads: an open sleep was counted to each read's now, and the box was not
    seen up before the entry that says it was."""
    found: list[history.Sleep] = []
    for entry in entries:
        if isinstance(entry, ledger.BoxSleeping):
            if found and found[-1].end is None:
                continue  # the same sleep, said again
            found.append(history.Sleep(entry.at, None, "the box said so",
                                       entry.action or "suspend", entry.saving_watts))
        elif ledger.ends_a_sleep(entry) and found and found[-1].end is None:
            found[-1].end = max(found[-1].start, entry.at)
    return found


def box(config: ProxyConfig, live: object, entries: Sequence[ledger.Entry], answers: object,
        problem: str = "", now: float | None = None) -> Box:
    """One box from what was read (None where a file was missing); pure."""
    checked, wrong = checked_live(live) if live is not None else ({}, "")
    found = Box(config.name, str(config.backend), "unknown",
                problem=problem or wrong or ("" if live is not None else
                                             "its proxy has not written its state yet"))
    for key, value in checked.items():
        setattr(found, key, value)
    wakes = [entry for entry in entries if isinstance(entry, ledger.Wake)]
    woke = [entry for entry in wakes
            if entry.ready_after is not None and entry.ready_after <= 86400]
    found.wake_seconds = [entry.ready_after for entry in woke if entry.ready_after is not None]
    found.wake_times = [entry.at for entry in woke]
    found.wakes_total = len(found.wake_seconds)
    found.give_ups_total = sum(1 for entry in wakes if entry.gave_up_after is not None)
    found.cache_answers_total = sum(1 for entry in entries
                                    if isinstance(entry, ledger.AnsweredAsleep))
    woken = history.wakes(wakes)
    if woken:
        cause, _, outcome = woken[-1].what.partition(": ")
        found.last_wake = LastWake(woken[-1].at, cause, outcome)
    found.models = models_of(answers)
    if now is not None and entries:
        slept = sleeps(entries)
        found.asleep_seconds_total = history.asleep_seconds(slept, 0.0, now, now)
        found.days = history.days(slept, history.wakes(wakes), DAYS, now, None,
                                  entries[0].at)
        if history.kwh_known(slept, None):
            found.kwh_saved = sum(day.kwh_saved or 0.0 for day in found.days)
            found.kwh_saved_total = history.kwh_saved(slept, 0.0, now, now, None,
                                                      EnergyConfig())
    return found


def _read_json(path: Path) -> object:
    with path.open("rb") as file:
        data = file.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise ValueError(f"larger than {MAX_FILE} bytes")
    return json.loads(data)


def read_box(config: ProxyConfig, directory: Path) -> Box:
    """One proxy's box from its files in `directory` (its StateDirectory)."""
    live: object = None
    problem = ""
    try:
        live = _read_json(directory / f"{config.name}.live.json")
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        problem = f"its live state is unreadable ({error})"
        log.warning("%s: %s", config.name, problem)
    try:
        entries = ledger.read(directory / f"{config.name}.ledger.jsonl")
    except OSError as error:
        entries, problem = [], problem or f"its ledger is unreadable ({error})"
    try:
        answers = _read_json(directory / f"{config.name}.answers.json")
    except (OSError, ValueError):
        answers = None
    return box(config, live, entries, answers, problem, time.time())


def read_boxes(proxies: Sequence[ProxyConfig], directory: Path) -> list[Box]:
    return counted_once([read_box(config, directory) for config in proxies], proxies)


def counted_once(boxes: list[Box], proxies: Sequence[ProxyConfig]) -> list[Box]:
    """Two proxies of one GPU box (two servers, two ports) each see its sleeps: its kWh are
    counted under the first alone, or an energy dashboard that adds them up counts them
    twice."""
    first: dict[str, str] = {}
    for box, proxy in zip(boxes, proxies, strict=True):
        host = proxy.backend.host.lower()
        if host in first:
            box.kwh_saved = box.kwh_saved_total = None
            box.kwh_counted_under = first[host]
        else:
            first[host] = box.name
    return boxes
