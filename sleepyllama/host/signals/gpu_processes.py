"""Programs on the GPU that are not our servers: ComfyUI, a training run, a game, a second
inference server started by hand. Between steps such a program often leaves the GPU at P8 and
0 %, so the GPU signal alone would let the box sleep under it.

nvidia-smi lists each process holding a GPU (its documented --query-compute-apps fields); a
process in a sleepyllama-server@ unit's cgroup is one of ours and stopped before a suspend.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.tools import bounded_output

COMPUTE_APPS_QUERY = ["--query-compute-apps=pid,process_name,used_gpu_memory",
                      "--format=csv,noheader,nounits"]
MAX_OUTPUT = 1 << 20
TIMEOUT = 15.0
_SERVER_UNIT = re.compile(r"/sleepyllama-server@[^/]+\.service(/|$)")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str  # the executable's path, as the driver knows it
    memory_mib: int | None  # None: "[N/A]" (some drivers, MIG, WSL)


def parse_compute_apps(output: str) -> list[GpuProcess]:
    """Lines of `nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory
    --format=csv,noheader,nounits`, e.g. "4242, /usr/bin/python3, 5120". A path may hold commas:
    the pid is the first field and the memory the last. ValueError on anything else."""
    processes = []
    for line in output.strip().splitlines():
        if not line.strip() or line.strip().startswith("No running processes found"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            raise ValueError(f"unexpected nvidia-smi line: {line.strip()!r}")
        memory = fields[-1]
        if not memory.isdigit() and not memory.startswith("["):
            raise ValueError(f"unexpected used_gpu_memory {memory!r} in {line.strip()!r}")
        processes.append(GpuProcess(int(fields[0]), ",".join(fields[1:-1]).strip(),
                                    int(memory) if memory.isdigit() else None))
    return processes


def is_ours(cgroup: str) -> bool:
    """A /proc/PID/cgroup whose unit is a sleepyllama-server@NAME.service."""
    return any(_SERVER_UNIT.search(line.partition("::")[2] or line) for line in cgroup.splitlines())


def foreign(processes: Sequence[GpuProcess], cgroup_of: Callable[[int], str | None]
            ) -> list[GpuProcess]:
    """The processes that are not our servers'; one that exited since nvidia-smi looked
    (cgroup None) is left out."""
    kept = []
    for process in processes:
        cgroup = cgroup_of(process.pid)
        if cgroup is not None and not is_ours(cgroup):
            kept.append(process)
    return kept


def read_cgroup(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None  # it exited


def describe(process: GpuProcess) -> str:
    memory = f", {process.memory_mib} MiB" if process.memory_mib is not None else ""
    return f"{process.name or 'a process'} (pid {process.pid}{memory})"


class GpuProcessesSignal:
    name = "gpu-processes"

    def __init__(self, nvidia_smi: str = "nvidia-smi",
                 cgroup_of: Callable[[int], str | None] = read_cgroup) -> None:
        self.nvidia_smi, self.cgroup_of = nvidia_smi, cgroup_of

    def read(self) -> Reading:
        try:
            returncode, output = bounded_output([self.nvidia_smi, *COMPUTE_APPS_QUERY], TIMEOUT,
                                                MAX_OUTPUT)
            if returncode != 0:
                message = (output.strip() or "no output").splitlines()[0]
                raise ValueError(f"nvidia-smi exited with status {returncode}: {message}")
            others = foreign(parse_compute_apps(output), self.cgroup_of)
        except FileNotFoundError:
            return Reading(self.name, Activity.UNKNOWN, f"{self.nvidia_smi} not found "
                           "(install the NVIDIA driver's tools, or set gpu_processes = false)")
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            return Reading(self.name, Activity.UNKNOWN, f"GPU processes: {error}")
        if others:
            return Reading(self.name, Activity.BUSY, "GPU used by " +
                           ", ".join(describe(process) for process in others))
        return Reading(self.name, Activity.IDLE, "no other program on the GPU")
