"""logind's sleep inhibitors in mode "block" (`systemd-inhibit --what=sleep make -j`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sleepyllama.host.signals.base import Activity, Reading

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


