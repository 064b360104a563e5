"""The idle checker's memory between runs: $STATE_DIRECTORY/idle.json.

It holds the idle clock (CLOCK_MONOTONIC + boot id), each server's work counter as last seen
(so the next check can tell that requests came in between), and the last verdict with its
readings, for `sleepyllama status`. Written atomically and readable by everyone (it holds no
secret, and `sleepyllama status` runs as any user); a corrupt file is reset with a warning.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

from sleepyllama import files, systemd
from sleepyllama.host.activity import Counter
from sleepyllama.host.idle import IdleState, Verdict
from sleepyllama.host.signals.base import Reading

log = logging.getLogger(__name__)

DEFAULT_DIRECTORY = Path("/var/lib/sleepyllama")


def ledger_path(state_file: Path | None = None) -> Path:
    """The host's ledger (ledger.py), beside the state file."""
    return (state_file or state_path()).with_name("ledger.jsonl")


def state_path() -> Path:
    """systemd's StateDirectory= (STATE_DIRECTORY), else /var/lib/sleepyllama."""
    return (systemd.state_directory() or DEFAULT_DIRECTORY) / "idle.json"


def load(path: Path) -> tuple[IdleState | None, dict]:
    """The idle state and the whole record; (None, {}) when there is none or it is malformed
    (valid JSON of the wrong shape included: a NaN clock, a string where counters go)."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"a {type(record).__name__}, not an object")
        since, boot = record["idle_since"], record["boot_id"]
        looked = record.get("looked_at")
        if not isinstance(boot, str):
            raise ValueError(f"boot_id {boot!r}")
        for name, value in (("idle_since", since), ("looked_at", looked)):
            if value is not None and (not files.finite(value) or value < 0):
                raise ValueError(f"{name} {value!r}")
        state = IdleState(boot, None if since is None else float(since),
                          None if looked is None else float(looked))
    except FileNotFoundError:
        return None, {}
    except PermissionError:
        raise  # not corrupt: readable by root only; the caller says so
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s is unreadable (%s): starting the idle clock again", path, error)
        return None, {}
    return state, record


def counters(record: dict) -> dict[str, Counter]:
    """The servers' work counters from a loaded record; a malformed one is dropped."""
    stored = record.get("counters") or {}
    if not isinstance(stored, dict):
        log.warning("the stored counters are unreadable (%r): counting from now", stored)
        return {}
    kept = {}
    for name, value in stored.items():
        try:
            work, at = value["work"], float(value["at"])
            if isinstance(work, bool) or not isinstance(work, int | str) or not math.isfinite(at):
                raise ValueError(f"work {work!r} at {at!r}")
            kept[name] = Counter(work, str(value["epoch"]), at, str(value.get("fingerprint", "")))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("%s: the counter of %s is unreadable: counting from now", name, name)
    return kept


def well_formed_watts(record: object) -> bool:
    """{"watts": finite >= 0, "samples": whole >= 1}, as idle_check.idle_watts() writes it."""
    if not isinstance(record, dict):
        return False
    watts, samples = record.get("watts"), record.get("samples")
    return (files.finite(watts) and watts >= 0
            and isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1)


def idle_watts(record: dict) -> dict | None:
    """The GPUs' averaged idle power from a loaded record; None when absent or malformed."""
    value = record.get("idle_watts")
    return value if well_formed_watts(value) else None


def save(path: Path, verdict: Verdict, readings: list[Reading],
         server_counters: dict[str, Counter], idle_watts: dict | None = None) -> None:
    record = {
        "idle_watts": idle_watts,
        **asdict(verdict.state),
        "counters": {name: asdict(counter) for name, counter in server_counters.items()},
        "checked_at": time.time(),
        "verdict": verdict.action.value,
        "reason": verdict.reason,
        "idle_for": verdict.idle_for,
        "sleep_in": verdict.sleep_in,
        "readings": [{"signal": r.signal, "activity": r.activity.value, "reason": r.reason}
                     for r in readings],
    }
    write(path, record)


def reset(path: Path, boot_id: str, reason: str) -> None:
    """Start the idle clock again (after a resume, or a suspend that did not happen). The
    counters go too: the servers start anew after a resume, and their first look is the base.
    The GPUs' measured idle draw stays: it is what every sleep's saving is told from, and a
    sleep asked for right after a resume (Sleep now) must carry it too."""
    _state, before = load(path)
    write(path, {"boot_id": boot_id, "idle_since": None, "checked_at": time.time(),
                 "verdict": "stay awake", "reason": reason, "readings": [],
                 "idle_watts": idle_watts(before)})


def write(path: Path, record: dict) -> None:
    # readable by everyone: `sleepyllama status` runs as any user, and it holds no secret
    files.write_atomic(path, (json.dumps(record, indent=1) + "\n").encode(), 0o644)
