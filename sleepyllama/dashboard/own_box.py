"""The GPU box as its own page shows it (sleepyllama-web run there): what the last idle check
saw (idle.json: its verdict, each signal's reading, the GPUs' idle draw) and the box's own
ledger (its sleeps and wakes: the last days, the kWh saved, as `sleepyllama history` counts
them). The idle unit keeps both in its StateDirectory, readable by every user (the page runs
as a dynamic user of its own).

Everything read back is checked for shape and range; what is missing or wrong is said, never a
crash. `own_box()` is pure.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sleepyllama import files, history, ledger
from sleepyllama.config import Config
from sleepyllama.host import state

log = logging.getLogger(__name__)

MAX_FILE = 1 << 20  # idle.json is a few KiB
MAX_TEXT = 300  # a reading's reason, as the page shows it
DAYS = 7


@dataclass
class Reading:
    signal: str
    activity: str  # "idle", "busy" or "unknown" (unknown counts as busy)
    reason: str


@dataclass
class OwnBox:
    name: str  # the host's name
    verdict: str = ""  # the last idle check's: "sleep", "stay awake"; "": no check yet
    reason: str = ""
    checked_at: float | None = None
    idle_for: float | None = None
    sleep_in: float | None = None  # seconds left on the idle clock
    readings: list[Reading] = field(default_factory=list)
    problem: str = ""  # why there is nothing to show: a file missing or unreadable
    days: list[history.Day] = field(default_factory=list)
    kwh_saved: float | None = None  # over the days shown; None: no power figure yet
    power: str = ""  # how the power figure is made (history.power)

    def as_json(self) -> dict:
        return asdict(self)


def _seconds(value: object) -> float | None:
    return files.within(value, 0, 1e11)


def _text(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def readings_of(record: dict) -> list[Reading]:
    listed = record.get("readings")
    if not isinstance(listed, list):
        return []
    return [Reading(_text(item.get("signal")), _text(item.get("activity")),
                    _text(item.get("reason")))
            for item in listed[:50] if isinstance(item, dict) and _text(item.get("signal"))]


def own_box(config: Config, name: str, record: object, entries: Sequence[ledger.Entry],
            now: float) -> OwnBox:
    """The box from its idle state (None: none yet) and its ledger; pure."""
    found = OwnBox(name)
    if not isinstance(record, dict):
        found.problem = "no idle check has run yet (sleepyllama-idle.timer, every 30 s)"
        record = {}
    found.verdict = _text(record.get("verdict"))
    found.reason = _text(record.get("reason"))
    found.checked_at = _seconds(record.get("checked_at"))
    found.idle_for = _seconds(record.get("idle_for"))
    found.sleep_in = _seconds(record.get("sleep_in"))
    found.readings = readings_of(record)
    report = history.report(entries, config.energy, state.idle_watts(record), DAYS, now)
    found.days = [history.Day(**day) for day in report["days"]] if entries else []
    found.kwh_saved, found.power = report["kwh_saved"], report["power"]
    return found


def read_own_box(config: Config, directory: Path = state.DEFAULT_DIRECTORY) -> OwnBox:
    """This box from the idle unit's files in `directory` (its StateDirectory). Its ledger
    holds the sleeps and the wakes; the servers' own (their READY, in a directory of their
    user's that the page may not read) adds nothing the page shows."""
    ledgers = (directory / "ledger.jsonl",)
    record: object = None
    problem = ""
    try:
        with (directory / "idle.json").open("rb") as file:
            data = file.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise ValueError(f"larger than {MAX_FILE} bytes")
        record = json.loads(data)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        problem = f"its idle state is unreadable ({error})"
        log.warning("%s", problem)
    unreadable: list[str] = []
    entries = history.read_ledgers(ledgers, None, unreadable)
    found = own_box(config, socket.gethostname(), record, entries, time.time())
    found.problem = problem or found.problem or (
        f"its ledger is unreadable ({', '.join(unreadable)})" if unreadable else "")
    return found
