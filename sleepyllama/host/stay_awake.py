"""Keep the GPU box up for a while: a real logind block inhibitor on sleep, held by
systemd-inhibit in a transient unit, so that the idle check, a lid and `systemctl suspend` all
see it. One at a time: a new duration replaces the one held. Used by `sleepyllama stay-awake`
on the box and by the always-on host's commands (host/steering.py). Needs root."""

from __future__ import annotations

import time

from sleepyllama import systemd
from sleepyllama.words import format_duration

UNIT = "sleepyllama-stay-awake.service"


def start(duration: float) -> tuple[bool, str]:
    """(held, what to tell the person)."""
    systemd.systemctl("stop", UNIT)
    until = time.strftime("%a %H:%M", time.localtime(time.time() + duration))
    result = systemd.run_transient(
        UNIT, f"sleepyllama: stay awake until {until}",
        ["systemd-inhibit", "--what=sleep", "--mode=block", "--who=sleepyllama",
         f"--why=stay-awake until {until}", "sleep", str(int(duration))])
    if result.returncode != 0:
        return False, result.stderr.strip()
    return True, f"staying awake until {until} ({format_duration(duration)})"


def cancel() -> str:
    systemd.systemctl("stop", UNIT)
    return "stay-awake cancelled: the idle check decides again"
