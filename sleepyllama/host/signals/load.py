"""The machine's load ([idle] load = 2.0): a compile, a render or a backup that runs on the CPU
keeps the box up while the 5-minute load average is above the threshold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sleepyllama.host.signals.base import Activity, Reading


def five_minute_load(loadavg: str) -> float:
    """The second field of /proc/loadavg ("0.52 1.31 1.10 2/312 4242")."""
    fields = loadavg.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected /proc/loadavg: {loadavg.strip()!r}")
    return float(fields[1])


class LoadSignal:
    name = "load"

    def __init__(self, threshold: float,
                 read: Callable[[], str] = lambda: Path("/proc/loadavg").read_text()) -> None:
        self.threshold, self.read_loadavg = threshold, read

    def read(self) -> Reading:
        try:
            load = five_minute_load(self.read_loadavg())
        except (OSError, ValueError) as error:
            return Reading(self.name, Activity.UNKNOWN, f"cannot read the load: {error}")
        if load > self.threshold:
            return Reading(self.name, Activity.BUSY, f"load {load:.2f} over 5 minutes "
                           f"(above {self.threshold:g})")
        return Reading(self.name, Activity.IDLE, f"load {load:.2f}")
