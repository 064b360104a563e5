"""How the GPU box sleeps ([idle] action): what logind is asked for, what a wake from it costs,
and how the proxy speaks of it. Both hosts use it: the box to sleep, the proxy (told the action by
the box's "sleeping" hint) to wait and to say what the wait is.

A suspend keeps memory powered and resumes in seconds; hibernation writes memory to swap and
powers off, and resumes by reading it back; suspend-then-hibernate suspends, then hibernates
after logind's HibernateDelaySec; a power-off draws well under a watt, and its wake is a cold
boot (Wake-on-LAN from S5: most boards' "Power on by PCI-E").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SleepAction:
    name: str  # as written in [idle] action, in the hint and in the ledger
    logind: str  # the Manager method: Suspend, Hibernate, SuspendThenHibernate, PowerOff
    waking: str  # what the box does while the proxy waits, for a person
    # seconds from the magic packet to a served model before any wake was measured here (users'
    # figures: a resume from suspend under 5 s, from hibernation over 30 s, a cold boot 70 s to
    # the network and 110 s to a loaded model), the model's load included
    typical_wake: float
    resumes: bool  # memory comes back (systemd-sleep's hooks run): else the box boots
    powered_off: bool  # asleep, it draws what an off box draws ([energy] off_watts)
    needs_swap: bool  # memory is written to swap, and the kernel must be told where (resume=)
    asleep_words: str  # the box asleep this way, for a person ("asleep", "powered off")


ACTIONS = {action.name: action for action in (
    SleepAction("suspend", "Suspend", "waking", 15.0, True, False, False, "asleep"),
    SleepAction("hibernate", "Hibernate", "resuming from hibernation", 60.0, True, True, True,
                "hibernated"),
    SleepAction("suspend-then-hibernate", "SuspendThenHibernate",
                "waking (from suspend, or from hibernation after a while)", 60.0, True, False,
                True, "asleep"),
    SleepAction("poweroff", "PowerOff", "booting", 120.0, False, True, False, "powered off"),
)}
DEFAULT = "suspend"
# a wake that ends in a cold boot must not be given up on before it can have ended
COLD_BOOT_WAKE_TIMEOUT = 300.0


def get(name: str) -> SleepAction:
    """The action of that name; suspend for "" or one this version does not know (a newer
    box's hint)."""
    return ACTIONS.get(name) or ACTIONS[DEFAULT]
