"""sleepyllama-sleep-hook: run by systemd-sleep around every suspend, however it was entered
(installed as /usr/lib/systemd/system-sleep/sleepyllama, called with "pre"|"post" and the kind).

pre:  stop the servers if they still run (a lid, `systemctl suspend`): CUDA does not survive.
post: start the idle clock again and queue the start of sleepyllama-servers.target, without
      waiting, so that the resume is not held up by a model loading.
"""

from __future__ import annotations

import logging
import sys

from sleepyllama import ledger, logs, systemd
from sleepyllama.host import state

log = logging.getLogger("sleepyllama-sleep-hook")
STOP_TIMEOUT = 60.0


def pre(kind: str | None) -> int:
    if kind:  # run by systemd-sleep right before the kernel sleeps (not by sleepyllama-sleep.service)
        ledger.append(state.ledger_path(), "suspend", kind=kind)
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
    ledger.append(state.ledger_path(), "resume", kind=kind or "suspend")
    state.reset(state.state_path(), systemd.boot_id(), "resumed from suspend")
    systemd.start_servers()
    log.info("post: idle clock reset; starting %s", systemd.SERVERS_TARGET)
    return 0


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
