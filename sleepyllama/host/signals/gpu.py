"""The GPUs: NVIDIA's through nvidia-smi (pstate or utilization), AMD's through amdgpu's sysfs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.tools import bounded_output

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


