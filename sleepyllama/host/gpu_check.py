"""sleepyllama-gpu-check: before the model servers start (at boot, after every resume), check
that CUDA initializes, and heal it where it does not (sleepyllama-gpu-check.service, which
every sleepyllama-server@ unit wants and waits for).

After a resume CUDA can fail (cuInit error 999) until nvidia_uvm is reloaded; restarting the
server does not help, and it then answers on the CPU, 10-50x slower. With every server still
stopped: ask CUDA (host/cuda.py); on failure reload nvidia_uvm (only possible while nothing holds
/dev/nvidia-uvm: whoever does is named) and ask again. Still failing: report it (the journal,
the ledger, this unit failed for `sleepyllama status` and `check`), and with [resume]
gpu_failure = "reboot" reboot once, never twice within REBOOT_SPACING. The servers start either
way: a server on the CPU still answers, and says so in its STATUS (host/supervisor.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import ledger, logs, systemd
from sleepyllama.command_line import program_parser
from sleepyllama.config import Config, ConfigError
from sleepyllama.host import cuda, state
from sleepyllama.tools import TOOL_PATH, bounded_output
from sleepyllama.words import format_duration

log = logging.getLogger("sleepyllama-gpu-check")

UVM_DEVICE = "/dev/nvidia-uvm"
NO_DEVICE = 100  # CUDA_ERROR_NO_DEVICE
REBOOT_SPACING = 6 * 3600.0  # one reboot for a broken GPU, then a person decides


def holders(device: str = UVM_DEVICE, proc: Path = Path("/proc")) -> list[str]:
    """'ollama (pid 311)' for each process with `device` open: a reload waits for them."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == device for fd in (entry / "fd").iterdir()):
                found.append(f"{(entry / 'comm').read_text().strip()} (pid {entry.name})")
        except OSError:
            continue  # gone, or not ours to look at
    return found


def reload_uvm() -> str:
    """modprobe -r nvidia_uvm, then modprobe nvidia_uvm; "" when both worked, else what failed."""
    import shutil

    modprobe = shutil.which("modprobe", path=TOOL_PATH)
    if modprobe is None:
        return "modprobe is not installed (apt install kmod)"
    for argv in ([modprobe, "-r", "nvidia_uvm"], [modprobe, "nvidia_uvm"]):
        try:
            status, output = bounded_output(argv, 60.0, 1 << 16)
        except Exception as error:
            return f"{' '.join(argv[1:])}: {error}"
        if status != 0:
            return f"modprobe {' '.join(argv[1:])} exited with status {status}: " + (
                output.strip().splitlines() or ["no output"])[-1]
    return ""


@dataclass
class GpuOps:
    """What the check does to the system; tests replace it."""

    ask: Callable[[], cuda.CudaState] = cuda.check
    # the driver's device nodes, which stay after a resume whatever CUDA says
    gpus_present: Callable[[], bool] = lambda: any(Path("/dev").glob("nvidia[0-9]*"))
    holders: Callable[[], list[str]] = holders
    reload_uvm: Callable[[], str] = reload_uvm
    reboot: Callable[[], None] = systemd.reboot


def last_reboot(entries: Sequence[ledger.Entry]) -> float | None:
    """When this check last rebooted the box (the ledger's wall-clock time), if ever."""
    times = [entry.at for entry in entries if isinstance(entry, ledger.GpuReboot)]
    return max(times) if times else None


def run(config: Config, ledger_file: Path, ops: GpuOps | None = None,
        now: Callable[[], float] = time.time) -> bool:
    """True when the servers will find a working GPU (or there is none to find)."""
    ops = ops or GpuOps()
    if config.resume.gpu_check == "off":
        log.info("[resume] gpu_check = \"off\": not checking CUDA")
        return True
    first = ops.ask()
    if not first.driver:
        log.info("%s: nothing to check", first.describe())
        return True
    if first.ok:
        log.info("%s", first.describe())
        return True
    if first.result == NO_DEVICE and not ops.gpus_present():
        # the CUDA library on a machine without an NVIDIA GPU (a toolkit on a CPU box)
        log.info("%s, and no /dev/nvidia0: no NVIDIA GPU here, nothing to check", first.describe())
        return True
    log.warning("%s: reloading nvidia_uvm before the servers start, which usually heals it",
                first.describe())
    held = ops.holders()
    if held:
        why = f"nvidia_uvm is in use by {', '.join(held)}: it cannot be reloaded while they run"
        log.error("%s", why)
    else:
        why = ops.reload_uvm()
        if why:
            log.error("reloading nvidia_uvm failed: %s", why)
    second = ops.ask() if not held and not why else first
    if second.ok:
        log.info("CUDA initializes again after reloading nvidia_uvm: %s", second.describe())
        ledger.append(ledger_file, ledger.GpuHealed(error=first.describe()))
        return True
    log.error("the GPU is unusable: %s. The servers start, but on the CPU (10-50x slower). "
              "Fix: stop what holds nvidia_uvm and run `sudo modprobe -r nvidia_uvm && sudo "
              "modprobe nvidia_uvm`, or reboot; see `sleepyllama check` for the driver's suspend "
              "settings", second.describe())
    ledger.append(ledger_file, ledger.GpuFailed(error=second.describe(), held_by=tuple(held)))
    if config.resume.gpu_failure == "reboot":
        reboot_once(ops, ledger_file, now())
    return False


def reboot_once(ops: GpuOps, ledger_file: Path, now: float) -> None:
    last = last_reboot(ledger.read(ledger_file))
    if last is not None and now - last < REBOOT_SPACING:
        log.error("not rebooting: the last reboot for a broken GPU was %s ago (at most one "
                  "every %s); a person has to look", format_duration(round(now - last)),
                  format_duration(REBOOT_SPACING))
        return
    log.warning("[resume] gpu_failure = \"reboot\": rebooting to bring the GPU back")
    ledger.append(ledger_file, ledger.GpuReboot())
    try:
        ops.reboot()
    except Exception as error:
        log.error("logind refused to reboot: %s", error)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-gpu-check",
        "Check that CUDA initializes before the model servers start; reload nvidia_uvm where it "
        "does not (the failure seen after a resume), and report what still fails. "
        "sleepyllama-gpu-check.service runs it before every server start.",
        ["sudo sleepyllama-gpu-check        check (and heal) now",
         "journalctl -u sleepyllama-gpu-check -b   what it found since boot"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-gpu-check", args.verbose)
    try:
        config = configuration.load(args.config)
    except ConfigError as error:
        log.error("%s", error)
        return configuration.EX_CONFIG
    return 0 if run(config, state.ledger_path()) else 1


if __name__ == "__main__":
    sys.exit(main())
