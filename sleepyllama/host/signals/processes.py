"""Programs the user names ([idle] processes = ["make", "ffmpeg"]): while one runs, the box stays
up. A name matches a process's own name (/proc/PID/comm, 15 characters at most) or the file name
of its program (argv[0]), so "python3" and "llama-quantize" both work."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sleepyllama.host.signals.base import Activity, Reading

Process = tuple[int, str, str]  # (pid, comm, argv[0])


def running(proc: Path = Path("/proc")) -> list[Process]:
    """Every process this program can see; one that exits while it is read is left out."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode("utf-8", "replace")
        except OSError:
            continue
        found.append((int(entry.name), comm, argv0))
    return found


def matching(names: Sequence[str], processes: Iterable[Process]) -> list[str]:
    """'make (pid 311)' for each process that one of `names` names."""
    wanted = set(names)
    return [f"{comm} (pid {pid})" for pid, comm, argv0 in processes
            if comm in wanted or (argv0 and Path(argv0).name in wanted)]


class ProcessesSignal:
    name = "processes"

    def __init__(self, names: Sequence[str],
                 list_processes: Callable[[], Iterable[Process]] = running) -> None:
        self.names, self.list_processes = names, list_processes

    def read(self) -> Reading:
        try:
            found = matching(self.names, self.list_processes())
        except OSError as error:
            return Reading(self.name, Activity.UNKNOWN, f"cannot list processes: {error}")
        if found:
            return Reading(self.name, Activity.BUSY, "running: " + ", ".join(found[:5]) +
                           (f" and {len(found) - 5} more" if len(found) > 5 else ""))
        return Reading(self.name, Activity.IDLE, "none of " + ", ".join(self.names) + " running")
