"""The sleep sequence: one last look at every signal, servers included, immediately before
stopping the servers (CUDA does not survive a suspend); whether logind can sleep the box that
way at all (a hibernate without swap cannot: the servers, and their models, stay as they are);
then stop them and ask logind to suspend, hibernate or power off ([idle] action). A stopped
server reads idle, so nothing is looked at after the stop. Any failure on the way starts the
servers again and keeps the box up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import hints, history, ledger, sleep_actions, systemd
from sleepyllama.config import Address, Config
from sleepyllama.host import sleep_support, state, unit_view, wake_on_lan
from sleepyllama.host.signals.base import Activity, Reading, Signal

log = logging.getLogger(__name__)

STOP_MARGIN = 15.0  # on top of the longest stop_timeout: the wrapper's own kill and exit


def measured_idle_watts() -> dict | None:
    try:
        return state.idle_watts(state.load(state.state_path())[1])
    except OSError:  # sleepyllama sleep-now as a user who may not read the idle unit's state
        return None


@dataclass
class SystemOps:
    """What the sequence does to the system; tests replace it, the programs use systemd's."""

    stop_servers: Callable[[float], list[str]] = systemd.stop_servers
    start_servers: Callable[[], None] = systemd.start_servers
    sleep: Callable[[str], None] = systemd.sleep  # the [idle] action, through logind
    can_sleep: Callable[[str], str] = systemd.can_sleep  # logind's Can<Action>: "yes", "na", ...
    # Wake-on-LAN armed on the cards on the way to the proxies; what keeps the box from waking
    arm_wake_on_lan: Callable[[Sequence[Address]], list[str]] = wake_on_lan.arm
    # the same question, changing nothing (a dry run)
    wake_on_lan_problems: Callable[[Sequence[Address]], list[str]] = wake_on_lan.problems
    # what the idle unit, in its sandbox, cannot read of what it needs (a dry run runs outside)
    idle_blind_spots: Callable[[Config], list[str]] = unit_view.idle_blind_spots
    # the GPUs' draw awake and idle, as the idle checks measured it (state.py); None: not yet
    idle_watts: Callable[[], dict | None] = measured_idle_watts


@dataclass(frozen=True)
class Outcome:
    suspended: bool
    why_not: str = ""  # when not: the reason, for the journal and the idle state

    def __bool__(self) -> bool:
        return self.suspended


def last_look(signals: Sequence[Signal]) -> list[Reading]:
    """Every signal read once more; the readings that are not idle."""
    return [r for r in (s.read() for s in signals) if r.activity is not Activity.IDLE]


def sleep_now(config: Config, signals: Sequence[Signal], reason: str,
              ops: SystemOps | None = None) -> Outcome:
    """Whether logind accepted the suspend, and if not, why."""
    ops = ops or SystemOps()
    log.info("going to sleep: %s", reason)
    active = last_look(signals)
    if active:
        why = "; ".join(r.reason for r in active)
        log.info("staying awake after all: %s", why)
        return Outcome(False, f"busy at the last look: {why}")
    cannot = cannot_sleep(config.idle.action, ops)
    if cannot:
        log.warning("staying awake: %s", cannot)
        return Outcome(False, cannot)
    if config.idle.woken_by == "lan":
        # before the servers stop: a box that could not be woken again keeps serving
        problems = ops.arm_wake_on_lan(config.notify.proxies)
        if problems:
            why = ("no magic packet could wake the box again: " + "; ".join(problems) +
                   " (set [idle] woken_by = \"other\" if a plug, IPMI or a timer wakes it)")
            log.warning("staying awake: %s", why)
            return Outcome(False, why)
    timeout = max((s.stop_timeout for s in config.servers.values()), default=30.0) + STOP_MARGIN
    try:
        left = ops.stop_servers(timeout)
    except Exception as error:  # D-Bus errors: report, stay up
        log.error("cannot stop the servers (%s): staying awake", error)
        _restart(ops)
        return Outcome(False, f"cannot stop the servers: {error}")
    if left:
        log.error("%s did not stop within %.0f s: staying awake", ", ".join(left), timeout)
        _restart(ops)
        return Outcome(False, f"{', '.join(left)} did not stop")
    log.info("servers stopped")
    action = config.idle.action
    # the proxies mark the box asleep now, and learn what a wake from it costs: their next
    # client wakes it without first waiting for a connect to fail
    saving = history.saving_watts(config.energy, ops.idle_watts(), action)
    hints.send(config.notify.proxies, hints.Hint("sleeping", action=action, saving_watts=saving))
    try:
        ops.sleep(action)
    except Exception as error:
        said = systemd.dbus_words(error)
        log.error("logind refused to %s: %s", action, said)
        _restart(ops)
        return Outcome(False, f"logind refused to {action}: {said}")
    log.info("%s requested from logind", action)
    return Outcome(True)


def sleep_advice(action: str, can_sleep: Callable[[str], str]
                 ) -> tuple[bool, sleep_support.Support]:
    """(whether logind could be asked, what it and the system say of sleeping that way)."""
    try:
        can, asked = can_sleep(action), True
    except Exception as error:  # no logind (a container without it)
        can, asked = f"unknown ({systemd.dbus_words(error)})", False
    texts = []
    for path in (Path("/proc/swaps"), Path("/proc/cmdline")):
        try:
            texts.append(path.read_text())
        except OSError:
            texts.append("")
    return asked, sleep_support.advice(action, can, *texts)


def cannot_sleep(action: str, ops: SystemOps) -> str:
    """Why logind cannot sleep the box as [idle] action says, asked before anything is
    stopped; "" where it can, or where logind cannot be asked (then the sleep is tried, and a
    refusal starts the servers again)."""
    asked, support = sleep_advice(action, ops.can_sleep)
    return "; ".join(support.errors) if asked else ""


def record_power_off(ledger_file: Path, action: str) -> None:
    """A power-off runs no systemd-sleep hook: its "suspend" is recorded here, once logind took
    the job (it returns at once; the shutdown takes seconds), and its wake at the next boot
    (hook.boot)."""
    if not sleep_actions.get(action).resumes:
        ledger.append(ledger_file, ledger.Suspend(kind=action))


def _restart(ops: SystemOps) -> None:
    try:
        ops.start_servers()
        log.info("servers started again")
    except Exception as error:
        log.error("cannot start the servers again: %s", error)
