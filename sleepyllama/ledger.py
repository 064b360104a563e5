"""A record of what happened on this host, for `sleepyllama history`: one JSON object per line,
appended to a file in the StateDirectory.

Each entry carries the wall-clock time, CLOCK_MONOTONIC and the boot id. An append is one
write(2) of one whole line with O_APPEND, so a crash can at worst leave a torn last line, which
reading skips with a warning. The file is bounded: past MAX_BYTES the oldest half is rolled off.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from sleepyllama import files, hints, systemd

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20  # about 5000 entries: months of sleeps and wakes


class Event:
    """Every event a ledger holds, named once: who writes it, and the fields it carries beyond
    at, mono and boot (a reader relies on NEEDED alone; the rest may be absent on older lines)."""

    # the GPU box (ledger.jsonl, servers/ledger.jsonl)
    SLEEP = "sleep"  # the idle check decided to sleep: reason, signals
    SUSPEND = "suspend"  # the box went down: kind (how: sleep_actions)
    RESUME = "resume"  # it came back: kind
    SERVER_READY = "server-ready"  # name, load_seconds
    SERVER_DEGRADED = "server-degraded"  # name, problem (on the CPU, fewer layers)
    GPU_HEALED = "gpu-healed"  # error: CUDA failed, and the reload of nvidia_uvm healed it
    GPU_FAILED = "gpu-failed"  # error, held_by: it did not
    GPU_REBOOT = "gpu-reboot"  # the one reboot it asked for
    # a proxy (NAME.ledger.jsonl)
    WAKE = "wake"  # first, request, agent, signals, and ready_after (with up_after, served_after,
    # from), gave_up_after or abandoned_after; a learned pre-wake's cause and expected too
    BOX_UP = "box-up"  # the box answered outside a wake of the proxy's
    BOX_SLEEPING = "box-sleeping"  # its "sleeping" hint: action, saving_watts
    ANSWERED_ASLEEP = "answered-asleep"  # request, client: answered from the cache
    FIRST_ANSWER = "first-answer"  # after_ready: the woken box's first bytes to its first client
    FIRST_USE = "first-use"  # client: the first after an hour of quiet while the box was up


def append(path: Path, event: str, **fields: object) -> None:
    """Add one entry; never fatal (a record must not stop a suspend or a wake)."""
    try:
        boot = systemd.boot_id()
    except OSError:
        boot = ""
    entry = {"at": round(time.time(), 3), "mono": round(time.monotonic(), 3), "boot": boot,
             "event": event, **fields}
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                # new: readable by the page, whatever the unit's UMask=0077 made of the 0644
                os.fchmod(fd, 0o644)
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > MAX_BYTES:
            roll(path)
    except OSError as error:
        log.warning("cannot add to %s: %s", path, error)


def roll(path: Path) -> None:
    """Keep the newest half of the file, whole lines only, replacing it atomically."""
    data = path.read_bytes()
    keep = data[len(data) // 2:]
    keep = keep[keep.find(b"\n") + 1:]
    files.write_atomic(path, keep, 0o644)


# Every field the writers put in an entry, and what a reader may rely on when it reads one back:
# a line of an older version, a hand edit or a torn write must never reach Retry-After, status or
# history with a NaN (JSON's parser takes NaN and Infinity), a string for a number, or a time
# that time.localtime() refuses.
LATEST = 1e11  # seconds: a wall-clock time or a duration past this is nothing real (year 5138)
SECONDS = ("ready_after", "up_after", "served_after", "gave_up_after", "abandoned_after", "load_seconds",
           "after_ready", "expected")
TEXTS = ("name", "reason", "kind", "action", "from", "first", "request", "agent", "client",
         "error", "problem", "cause")
WATTS = ("saving_watts",)  # what a sleep saves each hour, as the box said it (hints.py)
NEEDED = {Event.SERVER_READY: ("name", "load_seconds"), Event.SERVER_DEGRADED: ("name", "problem")}


def _seconds(value: object) -> bool:
    return files.finite(value) and 0 <= value < LATEST  # type: ignore[operator]


def well_formed(entry: object) -> bool:
    """An entry of the shape every reader relies on: an event name, a time, a boot id, and each
    field it holds of its kind (NEEDED: those its event's readers need)."""
    if not (isinstance(entry, dict) and isinstance(entry.get("event"), str)
            and _seconds(entry.get("at")) and files.finite(entry.get("mono", 0))
            and isinstance(entry.get("boot", ""), str)):
        return False
    signals = entry.get("signals", 0)
    held_by = entry.get("held_by", [])
    return (all(_seconds(entry[key]) for key in SECONDS if key in entry)
            and all(isinstance(entry[key], str) for key in TEXTS if key in entry)
            and all(files.within(entry[key], 0, hints.MAX_WATTS) is not None
                    for key in WATTS if key in entry)
            and all(key in entry for key in NEEDED.get(entry["event"], ()))
            and isinstance(signals, int) and not isinstance(signals, bool) and signals >= 0
            and isinstance(held_by, list) and all(isinstance(who, str) for who in held_by))


def read(path: Path) -> list[dict]:
    """Every entry, oldest first; a torn or garbled line is skipped with a warning."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if not well_formed(entry):
                raise ValueError("not an entry")
        except ValueError:
            log.warning("%s line %d is torn, garbled or out of range: skipped", path, number)
            continue
        entries.append(entry)
    return entries


def ends_a_sleep(entry: dict) -> bool:
    """A proxy's entry of its box seen up: a wake that reached ready, or box-up (the box
    answered outside a wake of the proxy's: woken by another, a sleep that was refused or a
    "sleeping" hint that was not the box's). A sleep the page counts ends there."""
    return entry.get("event") == Event.BOX_UP or (entry.get("event") == Event.WAKE
                                              and "ready_after" in entry)
