"""Activity signals on the inference host: is anything using the box? GPUs (nvidia-smi or
amdgpu's sysfs), the model servers (host/activity.py), and logind's sleep inhibitors.

Each signal is a small class with read() -> Reading: busy, idle or unknown, with the human reason
that ends up in the journal and in `sleepyllama status`. A signal that cannot be read is
UNKNOWN, never IDLE, and the idle decision treats UNKNOWN as busy: sleepyllama never suspends
on an error. Parsing is kept in pure functions so tests feed them real output.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sleepyllama.config import IdleConfig, ServerConfig
from sleepyllama.host.activity import Counter, Unreadable, judge, source_for
from sleepyllama.windows import Window, current_window

NVIDIA_SMI_QUERY = ["--query-gpu=index,pstate,utilization.gpu,power.draw",
                    "--format=csv,noheader,nounits"]
IDLE_PSTATE = 8  # P8 and higher numbers are the low-power states
MAX_SMI_OUTPUT = 1 << 20  # a line per GPU; past this nvidia-smi is not saying what we asked
SMI_TIMEOUT = 15.0
# Measured on an H200 (tests/data/nvidia-smi/h200-*.txt): P0 with no process at all, P0 at 0 %
# with a model loaded between requests; the Tesla P40, P100 and V100 do the same by their users'
# reports. Such a GPU never reads idle by pstate.
STUCK_IN_P0 = ("at 0 % utilization: some GPUs (datacenter cards, the Tesla P40, P100, V100) never "
               "leave P0 while a model is loaded; if no server is busy, set [idle] gpu = "
               "\"utilization\" (or [server.NAME] pstate = \"auto\" where nvidia-pstate works)")


class Activity(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"  # could not be read: counts as busy


@dataclass(frozen=True)
class Reading:
    signal: str
    activity: Activity
    reason: str
    # the fix, where this signal alone might keep the box up for good (a GPU stuck in P0)
    hint: str = ""


class Signal(Protocol):
    name: str

    def read(self) -> Reading: ...


# -- GPUs through nvidia-smi ------------------------------------------------------------------

@dataclass(frozen=True)
class Gpu:
    index: int
    pstate: int | None  # None: "[N/A]"
    utilization: int | None  # percent; None: "[N/A]" or "[Not Supported]"
    power: float | None = None  # watts drawn now; None: not reported


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Lines of `nvidia-smi --query-gpu=index,pstate,utilization.gpu[,power.draw]
    --format=csv,noheader,nounits`, e.g. "0, P8, 0, 21.37" or "1, P0, [N/A]". Raises ValueError
    on anything else."""
    gpus = []
    for line in output.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) not in (3, 4) or not fields[0].isdigit():
            raise ValueError(f"unexpected nvidia-smi line: {line.strip()!r}")
        pstate = re.fullmatch(r"P(\d+)", fields[1])
        if pstate is None and not fields[1].startswith("["):
            raise ValueError(f"unexpected pstate {fields[1]!r} in {line.strip()!r}")
        utilization = fields[2] if fields[2].isdigit() else None
        if utilization is None and not fields[2].startswith("["):
            raise ValueError(f"unexpected utilization {fields[2]!r} in {line.strip()!r}")
        power = None
        if len(fields) == 4 and not fields[3].startswith("["):
            try:
                power = float(fields[3])
            except ValueError:
                raise ValueError(f"unexpected power.draw {fields[3]!r} in {line.strip()!r}") from None
        gpus.append(Gpu(int(fields[0]), int(pstate.group(1)) if pstate else None,
                        int(utilization) if utilization is not None else None, power))
    return gpus


def bounded_output(argv: Sequence[str], timeout: float, limit: int) -> tuple[int, str]:
    """(exit status, stdout and stderr) of a command, read up to `limit` bytes within
    `timeout`: ValueError past the limit, subprocess.TimeoutExpired past the time. Either way
    the command is killed: a broken tool must not cost the idle check its memory or its turn."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True) as process:
        assert process.stdout is not None
        deadline, chunks, size = time.monotonic() + timeout, [], 0
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise subprocess.TimeoutExpired(argv, timeout)
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ValueError(f"{argv[0]} printed more than {limit} bytes")
                chunks.append(chunk)
            returncode = process.wait(max(0.1, deadline - time.monotonic()))
        finally:
            selector.close()
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # and whatever it started
    return returncode, b"".join(chunks).decode("utf-8", "replace")


def gpu_activity(gpus: Sequence[Gpu], mode: str) -> Reading:
    """mode "pstate": idle when every GPU is at P8 or lower power; "utilization": at 0 %."""
    if not gpus:
        return Reading("gpu", Activity.UNKNOWN, "nvidia-smi listed no GPU")
    if mode == "pstate":
        unknown = [g for g in gpus if g.pstate is None]
        if unknown:
            return Reading("gpu", Activity.UNKNOWN, f"GPU {unknown[0].index} reports no pstate "
                           "(use gpu = \"utilization\")")
        busy_gpus = [g for g in gpus if g.pstate < IDLE_PSTATE]
        busy = [f"GPU {g.index} at P{g.pstate}" for g in busy_gpus]
        states = ", ".join(f"GPU {g.index} P{g.pstate}" for g in gpus)
        if busy_gpus and all(g.utilization == 0 for g in busy_gpus):
            return Reading("gpu", Activity.BUSY, ", ".join(busy), hint=STUCK_IN_P0)
    else:
        unknown = [g for g in gpus if g.utilization is None]
        if unknown:
            return Reading("gpu", Activity.UNKNOWN, f"GPU {unknown[0].index} reports no "
                           "utilization")
        busy = [f"GPU {g.index} at {g.utilization} %" for g in gpus if g.utilization]
        states = ", ".join(f"GPU {g.index} {g.utilization} %" for g in gpus)
    if busy:
        return Reading("gpu", Activity.BUSY, ", ".join(busy))
    return Reading("gpu", Activity.IDLE, states)


class GpuSignal:
    name = "gpu"

    def __init__(self, mode: str, nvidia_smi: str = "nvidia-smi") -> None:
        self.mode, self.nvidia_smi = mode, nvidia_smi
        self.last: list[Gpu] = []  # what the last read saw, for the power drawn while idle

    def query(self) -> list[Gpu]:
        """The GPUs as nvidia-smi sees them; OSError or ValueError when it cannot say."""
        returncode, output = bounded_output([self.nvidia_smi, *NVIDIA_SMI_QUERY], SMI_TIMEOUT,
                                            MAX_SMI_OUTPUT)
        if returncode != 0:
            # nvidia-smi writes its errors to stdout ("NVIDIA-SMI has failed because ...")
            message = (output.strip() or "no output").splitlines()
            raise ValueError(f"nvidia-smi exited with status {returncode}: {message[0]}")
        return parse_nvidia_smi(output)

    def read(self) -> Reading:
        try:
            self.last = self.query()
            return gpu_activity(self.last, self.mode)
        except FileNotFoundError:
            return Reading(self.name, Activity.UNKNOWN, f"{self.nvidia_smi} not found "
                           "(install the NVIDIA driver's tools, or set gpu = \"off\")")
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            return Reading(self.name, Activity.UNKNOWN, str(error))


# -- AMD GPUs through sysfs -------------------------------------------------------------------

AMD_IDLE_PERCENT = 5  # an idle amdgpu reads 0 to a few percent (display, video decode)


def amdgpu_activity(busy_percent: dict[str, int]) -> Reading:
    """Idle when every card's gpu_busy_percent is at most AMD_IDLE_PERCENT."""
    if not busy_percent:
        return Reading("gpu", Activity.UNKNOWN, "no /sys/class/drm/card*/device/gpu_busy_percent "
                       "(amdgpu driver not loaded?), or set gpu = \"off\"")
    busy = [f"{card} at {percent} %" for card, percent in busy_percent.items()
            if percent > AMD_IDLE_PERCENT]
    if busy:
        return Reading("gpu", Activity.BUSY, ", ".join(busy))
    return Reading("gpu", Activity.IDLE, ", ".join(f"{card} {percent} %"
                                                    for card, percent in busy_percent.items()))


class AmdGpuSignal:
    name = "gpu"

    def __init__(self, drm: Path = Path("/sys/class/drm")) -> None:
        self.drm = drm

    def query(self) -> dict[str, int]:
        """card name -> busy percent; OSError or ValueError when a card cannot be read."""
        return {path.parent.parent.name: int(path.read_text().strip())
                for path in sorted(self.drm.glob("card*/device/gpu_busy_percent"))}

    def read(self) -> Reading:
        try:
            return amdgpu_activity(self.query())
        except (OSError, ValueError) as error:
            return Reading(self.name, Activity.UNKNOWN, f"gpu_busy_percent: {error}")


# -- model servers: requests in flight, work since the last check, model unloaded ---------------

class ServersSignal:
    """Reads every server's activity source and compares each work counter with the one seen at
    the previous check (`counters`, kept in the state file): a counter that moved means a request
    came, even if it ended long before this look. After read(), `counters` holds the new ones."""

    name = "servers"

    def __init__(self, servers: Sequence[ServerConfig], counters: dict[str, Counter],
                 clock: Callable[[], float] = time.time) -> None:
        self.sources = [(server.name, source_for(server)) for server in servers]
        self.counters = dict(counters)
        self.clock = clock

    def read(self) -> Reading:
        if not self.sources:
            return Reading(self.name, Activity.IDLE, "no [server.*] configured")
        results: list[tuple[Activity, str]] = []
        for name, source in self.sources:
            now = self.clock()
            try:
                look = source.look()
            except Unreadable as error:
                results.append((Activity.UNKNOWN, f"{name}: {error}"))
                continue
            busy, reason = judge(name, look, self.counters.get(name), now)
            results.append((Activity.BUSY if busy else Activity.IDLE, reason))
            if look.work is not None:
                self.counters[name] = Counter(look.work, look.epoch, now, look.fingerprint)
        for wanted in (Activity.UNKNOWN, Activity.BUSY):
            if any(activity is wanted for activity, _ in results):
                return Reading(self.name, wanted,
                               "; ".join(reason for activity, reason in results if activity is wanted))
        return Reading(self.name, Activity.IDLE, "; ".join(reason for _, reason in results))


# -- sleep inhibitors (logind) ----------------------------------------------------------------

# logind's ListInhibitors(): (what, who, why, mode, uid, pid)
Inhibitor = tuple[str, str, str, str, int, int]


def blocking_sleep_inhibitors(inhibitors: Sequence[Inhibitor], own_pid: int) -> list[str]:
    """Who holds a mode "block" inhibitor on "sleep" (e.g. `systemd-inhibit --what=sleep make`);
    "delay" inhibitors only postpone a suspend by seconds and never keep the box up."""
    return [f"{who} ({why})" if why else who
            for what, who, why, mode, _uid, pid in inhibitors
            if "sleep" in what.split(":") and mode == "block" and pid != own_pid]


class InhibitorsSignal:
    name = "inhibitors"

    def __init__(self, list_inhibitors: Callable[[], Sequence[Inhibitor]], own_pid: int) -> None:
        self.list_inhibitors, self.own_pid = list_inhibitors, own_pid

    def read(self) -> Reading:
        try:
            holders = blocking_sleep_inhibitors(self.list_inhibitors(), self.own_pid)
        except Exception as error:
            return Reading(self.name, Activity.UNKNOWN, f"cannot list logind inhibitors: {error}")
        if holders:
            return Reading(self.name, Activity.BUSY, "sleep inhibited by " + ", ".join(holders))
        return Reading(self.name, Activity.IDLE, "no sleep inhibitor")


# -- awake windows ([schedule]) ------------------------------------------------------------------

class ScheduleSignal:
    name = "schedule"

    def __init__(self, windows: Sequence[Window],
                 clock: Callable[[], time.struct_time] = time.localtime) -> None:
        self.windows, self.clock = windows, clock

    def read(self) -> Reading:
        now = self.clock()
        window = current_window(self.windows, now)
        if window is None:
            return Reading(self.name, Activity.IDLE, "outside the awake windows")
        until = f"{window.end // 60:02d}:{window.end % 60:02d}"
        return Reading(self.name, Activity.BUSY, f"inside the awake window {window.text} "
                       f"(until {until})")


def configured_signals(idle: IdleConfig, servers: Sequence[ServerConfig],
                       list_inhibitors: Callable[[], Sequence[Inhibitor]],
                       own_pid: int, counters: dict[str, Counter],
                       schedule: Sequence[Window] = ()) -> list[Signal]:
    signals: list[Signal] = []
    if schedule:
        signals.append(ScheduleSignal(schedule))
    if idle.gpu == "amdgpu":
        signals.append(AmdGpuSignal())
    elif idle.gpu != "off":
        signals.append(GpuSignal(idle.gpu))
    if idle.servers:
        signals.append(ServersSignal(servers, counters))
    if idle.inhibitors:
        signals.append(InhibitorsSignal(list_inhibitors, own_pid))
    return signals
