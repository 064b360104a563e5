"""What NVIDIA's own README (chapter "Configuring Power Management Support", driver 595.45.04)
says to set so that a GPU survives a suspend, read from the driver's running parameters.

- The open kernel modules preserve video memory by themselves with
  NVreg_UseKernelSuspendNotifiers=1.
- Otherwise (the proprietary modules, or notifiers off): NVreg_PreserveVideoMemoryAllocations=1
  with nvidia-suspend.service and nvidia-resume.service enabled (the driver's systemd units).
- Video memory is then saved to NVreg_TemporaryFilePath (default /tmp), a file system that
  supports unnamed temporary files and has room for the video memory in use.

sleepyllama stops the servers before a suspend, so little video memory is in use then; the
settings still decide whether CUDA comes back. Pure: `check` hands in what it read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

PARAMS = Path("/proc/driver/nvidia/params")
VERSION = Path("/proc/driver/nvidia/version")
UNITS = ("nvidia-suspend.service", "nvidia-resume.service")


def parse_params(text: str) -> dict[str, str]:
    """/proc/driver/nvidia/params: "Name: value" lines ("TemporaryFilePath: \\"/var/tmp\\"")."""
    params = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            params[name.strip()] = value.strip().strip('"')
    return params


def advice(params: Mapping[str, str], version: str, enabled: Mapping[str, bool],
           free_bytes: int | None, used_bytes: int | None) -> list[str]:
    """One line for each setting NVIDIA's README names that this box lacks; [] when all is set."""
    open_modules = "Open Kernel Module" in version
    if open_modules and params.get("UseKernelSuspendNotifiers") == "1":
        return []
    lines = []
    if params.get("PreserveVideoMemoryAllocations") != "1":
        if open_modules:
            lines.append("the NVIDIA open kernel modules run without NVreg_UseKernelSuspendNotifiers"
                         "=1: video memory is not preserved across a suspend, and CUDA may fail "
                         "after the resume (echo 'options nvidia NVreg_UseKernelSuspendNotifiers=1'"
                         " | sudo tee /etc/modprobe.d/nvidia-power.conf, then reboot)")
        else:
            lines.append("the NVIDIA driver runs without NVreg_PreserveVideoMemoryAllocations=1: "
                         "video memory is not preserved across a suspend, and CUDA may fail after "
                         "the resume (echo 'options nvidia NVreg_PreserveVideoMemoryAllocations=1'"
                         " | sudo tee /etc/modprobe.d/nvidia-power.conf, enable "
                         f"{' and '.join(UNITS)}, then reboot)")
        return lines
    off = [unit for unit in UNITS if not enabled.get(unit)]
    if off:
        lines.append(f"NVreg_PreserveVideoMemoryAllocations=1 needs {' and '.join(off)} enabled "
                     f"(sudo systemctl enable {' '.join(off)}), or the resume fails")
    path = params.get("TemporaryFilePath") or "/tmp"
    if free_bytes is not None and used_bytes is not None and free_bytes < used_bytes:
        lines.append(f"NVreg_TemporaryFilePath ({path}) has {free_bytes >> 20} MiB free, less than "
                     f"the {used_bytes >> 20} MiB of video memory in use: the suspend fails (point "
                     "it at a disk with room: NVreg_TemporaryFilePath=/var/tmp)")
    return lines
