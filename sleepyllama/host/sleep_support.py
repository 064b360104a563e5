"""Can this box sleep the way [idle] action says? logind's own answer (Can<Action>), and for
hibernation the likely reasons when it says no, from /proc/swaps and the kernel command line.
Pure: `check` (checks.py) reads the files and asks logind."""

from __future__ import annotations

from dataclasses import dataclass, field

from sleepyllama import sleep_actions


@dataclass
class Support:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    good: list[str] = field(default_factory=list)


def swap_areas(swaps: str) -> list[str]:
    """The swap areas of /proc/swaps (its first line is a header)."""
    return [line.split()[0] for line in swaps.splitlines()[1:] if line.strip()]


def advice(action: str, can: str, swaps: str, cmdline: str) -> Support:
    """can: logind's answer ("yes", "no", "challenge", "na"), or the error of asking."""
    found = Support()
    words = f"[idle] action = \"{action}\""
    if can in ("yes", "challenge"):  # challenge: a user would be asked; the idle check is root
        found.good.append(f"{words}: logind can {action} this box")
    else:
        why = [f"logind answers Can{sleep_actions.get(action).logind} \"{can}\""]
        if sleep_actions.get(action).needs_swap:
            if not swap_areas(swaps):
                why.append("there is no swap to write memory to (a swap partition or file at "
                           "least as large as the memory in use)")
            if "resume=" not in cmdline:
                why.append("the kernel command line has no resume= naming that swap")
        found.errors.append(f"{words}: this box cannot {action}: " + "; ".join(why) +
                            ". The box will stay up; use another action, or set it up")
    if not sleep_actions.get(action).resumes:  # it boots: from off, by the firmware
        found.warnings.append(f"{words}: a magic packet must power the box on from off: enable "
                              "\"Wake on LAN\" or \"Power On by PCI-E\" in its firmware (not "
                              "visible from here), and try it once")
    return found
