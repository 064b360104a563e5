"""sleepyllama-idle: one idle check per run (sleepyllama-idle.timer runs it every 30 s).

Reads the activity signals, updates the idle clock in the state file, logs the verdict with its
reason, and when the box has been idle for [idle].timeout runs the sleep sequence.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import files, ledger, logs, systemd
from sleepyllama.command_line import program_parser
from sleepyllama.config import Config, ConfigError
from sleepyllama.host import hook, state
from sleepyllama.host.activity import Counter
from sleepyllama.host.idle import Action, Verdict, decide
from sleepyllama.host.signals import Signal, configured_signals
from sleepyllama.host.signals.base import Reading
from sleepyllama.host.signals.gpu import GpuSignal
from sleepyllama.host.signals.servers import ServersSignal
from sleepyllama.host.suspend import SystemOps, cannot_sleep, record_power_off, sleep_now

log = logging.getLogger("sleepyllama-idle")


def signals_for(config: Config, record: dict) -> list[Signal]:
    """The configured signals, with what the last check (its record) left them."""
    last_check = record.get("checked_at")
    return configured_signals(config.idle, list(config.servers.values()), systemd.list_inhibitors,
                              os.getpid(), state.counters(record), config.schedule,
                              systemd.list_sessions,
                              float(last_check) if files.finite(last_check) else None)


def server_counters(signals: list[Signal]) -> dict[str, Counter]:
    return next((s.counters for s in signals if isinstance(s, ServersSignal)), {})


def idle_watts(before: object, signals: list[Signal], idle: bool) -> dict | None:
    """The GPUs' power while the box sits idle, averaged over idle checks (the last 1000): what
    sleeping saves, with [energy] base_watts for the rest of the machine."""
    gpus = next((s.last for s in signals if isinstance(s, GpuSignal)), [])
    kept = before if state.well_formed_watts(before) else None
    if not idle or not gpus or any(gpu.power is None for gpu in gpus):
        return kept
    now = sum(gpu.power or 0.0 for gpu in gpus)
    samples = min(int(kept["samples"]) + 1, 1000) if kept else 1
    average = now if not kept else float(kept["watts"]) + (now - float(kept["watts"])) / samples
    return {"watts": round(average, 2), "samples": samples}


def check(config: Config, state_file: Path, *, dry_run: bool, ops: SystemOps | None = None,
          boot_id: str | None = None, now: float | None = None) -> Action:
    previous, record = state.load(state_file)
    boot = boot_id or systemd.boot_id()
    if (previous is None or previous.boot_id != boot) and not dry_run:
        hook.after_boot(state.ledger_path(state_file), boot)  # a power-off's wake
    signals = signals_for(config, record)
    readings = [signal.read() for signal in signals]
    verdict = decide(readings, previous, time.monotonic() if now is None else now, boot,
                     config.idle.timeout)
    watts = idle_watts(record.get("idle_watts"), signals, verdict.idle_for > 0)
    try:
        state.save(state_file, verdict, readings, server_counters(signals), watts)
    except PermissionError:
        if not dry_run:
            raise
        log.info("(not root: the verdict is not kept in %s)", state_file)
    ops = ops or SystemOps()
    if dry_run:
        return say_what_would_happen(config, verdict, ops)
    write_figures(config, state_file, signals, readings, verdict, watts)
    if verdict.action is Action.STAY_AWAKE:
        log.info("stay awake: %s", verdict.reason)
        return verdict.action
    ask_logind = ops.sleep

    def sleep_and_say_why(action: str) -> None:
        # before asking: logind returns at once, and the hook records a suspend itself. The
        # clock starts again before the box sleeps too (not trusting the hook's post alone, or
        # a failed post would send the box straight back to sleep): a reset written after the
        # request could land after the resume, over what the hook said of it
        ledger.append(state.ledger_path(state_file),
                      ledger.Sleep(reason=verdict.reason, action=action))
        state.reset(state_file, boot, f"asked logind to {action} ({verdict.reason})")
        ask_logind(action)
        record_power_off(state.ledger_path(state_file), action)

    outcome = sleep_now(config, signals, verdict.reason,
                        dataclasses.replace(ops, sleep=sleep_and_say_why))
    if not outcome:
        # the clock starts again after a failed attempt too (or the next tick, 30 s on, would
        # stop and start the servers again, forever: a box that cannot be woken says so once
        # a timeout, not every 30 s)
        state.reset(state_file, boot, f"the last attempt to sleep did not happen: "
                                      f"{outcome.why_not}")
    return verdict.action


def write_figures(config: Config, state_file: Path, signals: list[Signal],
                  readings: list[Reading], verdict: Verdict, watts: dict | None) -> None:
    """This check's figures for node_exporter ([metrics] textfile_dir; host/textfile.py)."""
    where = config.metrics.textfile_dir
    if where == "off":
        return
    from sleepyllama.host import textfile  # prometheus_client: not for a dry run

    gpus = next((s.last for s in signals if isinstance(s, GpuSignal)), [])
    servers = next((s.answered for s in signals if isinstance(s, ServersSignal)), {})
    registry = textfile.figures(readings, verdict.idle_for, gpus, servers,
                                ledger.read(state.ledger_path(state_file)), config.energy, watts)
    textfile.write(Path(where) if where else state_file.parent, registry)


def say_what_would_happen(config: Config, verdict: Verdict, ops: SystemOps) -> Action:
    """The dry run: the verdict, and whether the sleep sequence would refuse to suspend because
    no magic packet could wake the box (asked now, changing nothing), so that a dry run never
    promises a sleep that will not come."""
    problems = (ops.wake_on_lan_problems(config.notify.proxies)
                if config.idle.woken_by == "lan" else [])
    refusal = f"no magic packet could wake the box again: {'; '.join(problems)}"
    # read here as root; what the idle unit itself cannot read, it counts busy
    blind = ops.idle_blind_spots(config)
    if blind:
        log.info("would stay awake (dry run): under its unit the check cannot read what it "
                 "needs: %s", "; ".join(blind))
        return Action.STAY_AWAKE
    if verdict.action is Action.STAY_AWAKE:
        log.info("stay awake: %s", verdict.reason)
        if problems:
            log.info("and when idle long enough, it would stay awake all the same: %s", refusal)
        return verdict.action
    if problems:
        log.info("would stay awake (dry run): %s", refusal)
        return Action.STAY_AWAKE
    cannot = cannot_sleep(config.idle.action, ops)
    if cannot:
        log.info("would stay awake (dry run): %s", cannot)
        return Action.STAY_AWAKE
    log.info("would sleep now (dry run): %s", verdict.reason)
    return verdict.action


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-idle",
        "One idle check: read the activity signals (GPUs, the servers' requests, sleep inhibitors), "
        "update the idle clock, and suspend the box when it has been idle for [idle].timeout. "
        "sleepyllama-idle.timer runs it every 30 s.",
        ["sleepyllama-idle --dry-run       print the verdict and its reasons; stop nothing",
         "systemctl start sleepyllama-idle.service && journalctl -u sleepyllama-idle -n 5"])
    parser.add_argument("--dry-run", action="store_true",
                        help="keep the idle clock and print the verdict, but stop nothing and "
                        "never suspend")
    parser.add_argument("--state-file", type=Path, default=None,
                        help="idle state (default: $STATE_DIRECTORY/idle.json, else "
                        "/var/lib/sleepyllama/idle.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-idle", args.verbose)
    if args.dry_run and not logs.under_journald():
        logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
    try:
        config = configuration.load(args.config)
    except ConfigError as error:
        log.error("%s", error)
        return configuration.EX_CONFIG
    if not args.dry_run and os.geteuid() != 0:
        log.error("stopping servers and suspending need root: sudo sleepyllama-idle, or "
                  "sleepyllama-idle --dry-run to see the verdict")
        return 1
    try:
        check(config, args.state_file or state.state_path(), dry_run=args.dry_run)
    except PermissionError as error:
        log.error("%s: %s: run as root (sudo sleepyllama-idle --dry-run)", error.filename,
                  error.strerror)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
