"""sleepyllama-sleep-hook: run by systemd-sleep around every suspend, however it was entered
(installed as /usr/lib/systemd/system-sleep/sleepyllama, called with "pre"|"post" and the kind).

pre:  stop the servers if they still run (a lid, `systemctl suspend`): CUDA does not survive.
post: start the idle clock again and queue the start of sleepyllama-servers.target, without
      waiting, so that the resume is not held up by a model loading.

A power-off ([idle] action = "poweroff") runs no hook: its wake is the next boot, which
after_boot() records for the idle check's first look of that boot; the servers start as at any
boot.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from sleepyllama import ledger, logs, sleep_actions, systemd
from sleepyllama.host import state

log = logging.getLogger("sleepyllama-sleep-hook")
STOP_TIMEOUT = 60.0


def pre(kind: str | None) -> int:
    if kind:  # run by systemd-sleep right before the kernel sleeps (not by sleepyllama-sleep.service)
        ledger.append(state.ledger_path(), ledger.Suspend(kind=kind))
    running = systemd.running_servers()
    if not running:
        log.info("pre: no server running")
        return 0
    log.info("pre: stopping %s before the suspend", ", ".join(running))
    left = systemd.stop_servers(STOP_TIMEOUT)
    if left:
        log.error("pre: %s still running: they may not survive the suspend", ", ".join(left))
        return 1
    return 0


def post(kind: str | None) -> int:
    ledger.append(state.ledger_path(), ledger.Resume(kind=kind or "suspend"))
    state.reset(state.state_path(), systemd.boot_id(), "resumed from suspend")
    systemd.start_servers()
    log.info("post: idle clock reset; starting %s", systemd.SERVERS_TARGET)
    return 0


def after_boot(ledger_file: Path, boot_id: str) -> bool:
    """Record the boot as the wake when the box's last sleep was a power-off of an earlier boot
    (host/suspend.record_power_off): at the moment the kernel booted. True when recorded."""
    last = next((entry for entry in reversed(ledger.read(ledger_file))
                 if isinstance(entry, ledger.Suspend | ledger.Resume)), None)
    if (not isinstance(last, ledger.Suspend) or last.boot == boot_id
            or sleep_actions.get(last.kind).resumes):
        return False
    booted = boot_time()
    ledger.append(ledger_file, ledger.Resume(kind=last.kind, at=booted or 0.0))
    log.info("the box was powered off, and booted at %s: recorded as its wake",
             time.strftime("%H:%M:%S", time.localtime(booted or time.time())))
    return True


def boot_time(stat: Path = Path("/proc/stat")) -> float | None:
    """When the kernel booted (btime); None where /proc/stat does not say."""
    try:
        for line in stat.read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logs.setup("sleepyllama-sleep-hook")
    if not args or args[0] in ("-h", "--help"):
        print("usage: sleepyllama-sleep-hook pre|post [suspend|hibernate|hybrid-sleep|"
              "suspend-then-hibernate]\n\n" + (__doc__ or "").strip() + "\n\nexamples:\n"
              "  sudo sleepyllama-sleep-hook post   start the servers as after a resume\n"
              "  journalctl -t systemd-sleep        what it did around the last suspend")
        return 0 if args else 64
    kind = args[1] if len(args) > 1 else None
    if args[0] == "pre":
        return pre(kind)
    if args[0] == "post":
        return post(kind)
    log.error("unknown phase %r: expected pre or post", args[0])
    return 64


if __name__ == "__main__":
    sys.exit(main())
