"""A record of what happened on this host, for `sleepyllama history`: one JSON object per line,
appended to a file in the StateDirectory.

Each kind of entry is one record (Wake, BoxSleeping, Resume, ...), written and read here alone:
writers hand append() a record, readers get records from read(), each field checked for its
kind on the way in (parse), and a line of an older version still reads (a field it lacks is its
default). Each entry carries the wall-clock time, CLOCK_MONOTONIC and the boot id. An append is
one write(2) of one whole line with O_APPEND, so a crash can at worst leave a torn last line,
which reading skips with a warning. The file is bounded: past MAX_BYTES the oldest half is
rolled off.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import ClassVar

from sleepyllama import files, hints, sleep_actions, systemd

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20  # about 5000 entries: months of sleeps and wakes


@dataclass(frozen=True, kw_only=True)
class Entry:
    """What every entry carries: when (Unix time; written as 0, the time of the write), the
    boot's CLOCK_MONOTONIC then, and the boot id. A field absent from an older line reads as
    its default."""

    event: ClassVar[str] = ""  # its name in the file; each record below names its own, once
    at: float = 0.0
    mono: float = 0.0
    boot: str = ""


# -- the GPU box's -----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Sleep(Entry):
    """The idle check decided to sleep, and why."""
    event: ClassVar[str] = "sleep"
    reason: str = ""
    action: str = ""


@dataclass(frozen=True, kw_only=True)
class Suspend(Entry):
    """The box went down, and how (sleep_actions.py: suspend, hibernate, poweroff, ...)."""
    event: ClassVar[str] = "suspend"
    kind: str = ""


@dataclass(frozen=True, kw_only=True)
class Resume(Entry):
    """It came back from `kind`."""
    event: ClassVar[str] = "resume"
    kind: str = ""


@dataclass(frozen=True, kw_only=True)
class ServerReady(Entry):
    event: ClassVar[str] = "server-ready"
    name: str
    load_seconds: float


@dataclass(frozen=True, kw_only=True)
class ServerDegraded(Entry):
    """A server came up worse than it should: on the CPU, with fewer layers on the GPU."""
    event: ClassVar[str] = "server-degraded"
    name: str
    problem: str


@dataclass(frozen=True, kw_only=True)
class GpuHealed(Entry):
    """CUDA failed after a resume, and reloading nvidia_uvm healed it."""
    event: ClassVar[str] = "gpu-healed"
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class GpuFailed(Entry):
    """It did not heal; held_by: the processes that kept nvidia_uvm from being reloaded."""
    event: ClassVar[str] = "gpu-failed"
    error: str = ""
    held_by: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GpuReboot(Entry):
    """The one reboot it asked for ([resume] gpu_failure = "reboot")."""
    event: ClassVar[str] = "gpu-reboot"


# -- a proxy's ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Wake(Entry):
    """A wake, written when it ended: ready (ready_after, with when the box and then its server
    first answered), given up on (gave_up_after) or left once nobody waited (abandoned_after),
    each in seconds from the first signal; its first client and request, and for a learned
    pre-wake its cause and the use it was for (expected, Unix time)."""
    event: ClassVar[str] = "wake"
    first: str = ""
    request: str = ""
    agent: str = ""
    signals: int = 0
    ready_after: float | None = None
    up_after: float | None = None
    served_after: float | None = None
    gave_up_after: float | None = None
    abandoned_after: float | None = None
    woke_from: str = ""  # how the box had said it sleeps ("from" in the file)
    cause: str = ""
    expected: float | None = None

    @property
    def slept_as(self) -> str:
        """How the box slept before it: as it said, else as a box that does not say does."""
        return self.woke_from or sleep_actions.DEFAULT

    @property
    def took(self) -> float:
        """Seconds from its first signal to its end, however it ended."""
        return next((seconds for seconds in (self.ready_after, self.gave_up_after,
                                             self.abandoned_after) if seconds is not None), 0.0)


@dataclass(frozen=True, kw_only=True)
class BoxUp(Entry):
    """The box answered outside a wake of the proxy's (woken by another, a refused sleep)."""
    event: ClassVar[str] = "box-up"


@dataclass(frozen=True, kw_only=True)
class BoxSleeping(Entry):
    """Its "sleeping" hint: how it sleeps, and what the sleep saves each hour, as it said."""
    event: ClassVar[str] = "box-sleeping"
    action: str = ""
    saving_watts: float | None = None


@dataclass(frozen=True, kw_only=True)
class AnsweredAsleep(Entry):
    """A request answered from the cache while the box slept."""
    event: ClassVar[str] = "answered-asleep"
    request: str = ""
    client: str = ""


@dataclass(frozen=True, kw_only=True)
class FirstAnswer(Entry):
    """The woken box's first bytes to its first client, after_ready seconds after ready."""
    event: ClassVar[str] = "first-answer"
    after_ready: float | None = None


@dataclass(frozen=True, kw_only=True)
class FirstUse(Entry):
    """The first client after an hour of quiet while the box was up (proxy/uses.py)."""
    event: ClassVar[str] = "first-use"
    client: str = ""


RECORDS: dict[str, type[Entry]] = {record.event: record for record in (
    Sleep, Suspend, Resume, ServerReady, ServerDegraded, GpuHealed, GpuFailed, GpuReboot, Wake,
    BoxUp, BoxSleeping, AnsweredAsleep, FirstAnswer, FirstUse)}
IN_FILE = {"woke_from": "from"}  # a field whose name in the file is a Python keyword


def append(path: Path, entry: Entry) -> None:
    """Add one entry (its time, monotonic clock and boot now, unless it has a time of its
    own); never fatal (a record must not stop a suspend or a wake)."""
    try:
        boot = systemd.boot_id()
    except OSError:
        boot = ""
    line = (json.dumps(to_json(entry, boot), separators=(",", ":")) + "\n").encode()
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


def to_json(entry: Entry, boot: str) -> dict:
    """The line's object: at, mono, boot and event first, then each field that says something
    (a default is left out: an older reader reads its absence as it always did)."""
    document: dict = {"at": entry.at or round(time.time(), 3), "mono": round(time.monotonic(), 3),
                      "boot": boot, "event": entry.event}
    for field in fields(entry):
        value = getattr(entry, field.name)
        if field.name not in ("at", "mono", "boot") and value != field.default:
            document[IN_FILE.get(field.name, field.name)] = list(value) if isinstance(
                value, tuple) else value
    return document


def roll(path: Path) -> None:
    """Keep the newest half of the file, whole lines only, replacing it atomically."""
    data = path.read_bytes()
    keep = data[len(data) // 2:]
    keep = keep[keep.find(b"\n") + 1:]
    files.write_atomic(path, keep, 0o644)


# What a reader may rely on when it reads an entry back: a line of an older version, a hand edit
# or a torn write must never reach Retry-After, status or history with a NaN (JSON's parser
# takes NaN and Infinity), a string for a number, or a time that time.localtime() refuses.
LATEST = 1e11  # seconds: a wall-clock time or a duration past this is nothing real (year 5138)


def _seconds(value: object) -> bool:
    return files.finite(value) and 0 <= value < LATEST  # type: ignore[operator]


def _checked(name: str, kind: str, value: object) -> object:
    """`value` if it is of the field's kind, else ValueError."""
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if kind == "tuple[str, ...]" and isinstance(value, list) and all(
            isinstance(item, str) for item in value):
        return tuple(value)
    # a number as written (12 or 12.0): `history` shows it so
    if kind in ("float", "float | None") and name == "saving_watts":
        if files.within(value, 0, hints.MAX_WATTS) is not None:
            return value
    elif kind in ("float", "float | None") and _seconds(value):
        return value
    raise ValueError(f"{name}: {str(value)[:40]!r}")


def parse(document: object) -> Entry | None:
    """The record a line's object holds, each field checked for its kind (ValueError names the
    first that is not); None for an event this version does not know (a newer one's)."""
    if not isinstance(document, dict) or not isinstance(document.get("event"), str):
        raise ValueError("not an entry")
    record = RECORDS.get(document["event"])
    if record is None:
        return None
    if not (_seconds(document.get("at")) and files.finite(document.get("mono", 0))
            and isinstance(document.get("boot", ""), str)):
        raise ValueError("no time, or no boot")
    values: dict[str, object] = {}
    for field in fields(record):
        key = IN_FILE.get(field.name, field.name)
        if key in document and document[key] is not None:
            values[field.name] = _checked(field.name, str(field.type), document[key])
        elif field.default is MISSING:
            raise ValueError(f"{record.event} without {key}")
    return record(**values)


def read(path: Path) -> list[Entry]:
    """Every entry, oldest first; a torn or garbled line is skipped with a warning, an event
    of a newer version without one."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entry = parse(json.loads(line))
        except ValueError:
            log.warning("%s line %d is torn, garbled or out of range: skipped", path, number)
            continue
        if entry is not None:
            entries.append(entry)
    return entries


def ends_a_sleep(entry: Entry) -> bool:
    """A proxy's entry of its box seen up: a wake that reached ready, or box-up (the box
    answered outside a wake of the proxy's: woken by another, a sleep that was refused or a
    "sleeping" hint that was not the box's). A sleep the page counts ends there."""
    return isinstance(entry, BoxUp) or (isinstance(entry, Wake) and entry.ready_after is not None)
