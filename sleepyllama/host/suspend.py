"""The sleep sequence: stop the servers (CUDA does not survive a suspend), look once more, then
ask logind to suspend. Any failure on the way starts the servers again and keeps the box up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sleepyllama import systemd
from sleepyllama.config import Config
from sleepyllama.host.signals import Activity, Reading, Signal

log = logging.getLogger(__name__)

# a GPU whose server just unloaded its model may take a few seconds to drop to P8
SETTLE = 15.0
STOP_MARGIN = 15.0  # on top of the longest stop_timeout: the wrapper's own kill and exit


@dataclass
class SystemOps:
    """What the sequence does to the system; tests replace it, the programs use systemd's."""

    stop_servers: Callable[[float], list[str]] = systemd.stop_servers
    start_servers: Callable[[], None] = systemd.start_servers
    suspend: Callable[[], None] = systemd.suspend


def recheck(signals: Sequence[Signal], settle: float = SETTLE,
            sleep: Callable[[float], None] = time.sleep) -> list[Reading]:
    """Read every signal until all are idle or `settle` seconds pass; the non-idle readings."""
    deadline = time.monotonic() + settle
    while True:
        active = [r for r in (s.read() for s in signals) if r.activity is not Activity.IDLE]
        if not active or time.monotonic() >= deadline:
            return active
        sleep(1.0)


def sleep_now(config: Config, signals: Sequence[Signal], reason: str,
              ops: SystemOps | None = None, settle: float = SETTLE) -> bool:
    """True when logind accepted the suspend."""
    ops = ops or SystemOps()
    log.info("going to sleep: %s", reason)
    timeout = max((s.stop_timeout for s in config.servers.values()), default=30.0) + STOP_MARGIN
    try:
        left = ops.stop_servers(timeout)
    except Exception as error:  # D-Bus errors: report, stay up
        log.error("cannot stop the servers (%s): staying awake", error)
        return False
    if left:
        log.error("%s did not stop within %.0f s: staying awake", ", ".join(left), timeout)
        _restart(ops)
        return False
    log.info("servers stopped")
    active = recheck(signals, settle)
    if active:
        log.info("staying awake after all: %s", "; ".join(r.reason for r in active))
        _restart(ops)
        return False
    try:
        ops.suspend()
    except Exception as error:
        log.error("logind refused to suspend: %s", error)
        _restart(ops)
        return False
    log.info("suspend requested from logind")
    return True


def _restart(ops: SystemOps) -> None:
    try:
        ops.start_servers()
        log.info("servers started again")
    except Exception as error:
        log.error("cannot start the servers again: %s", error)
