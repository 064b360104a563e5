"""Stand-ins for the GPU box's tests: the system operations of the sleep sequence, recorded
(no systemd here; the container tests run the real ones), a proxy's hint socket, and a quiet
config whose verdict is the clock's alone."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

from sleepyllama import config
from sleepyllama.host.idle import Action
from sleepyllama.host.idle_check import check
from sleepyllama.host.suspend import SystemOps

# no signal at all: the verdict is the clock's alone
QUIET_TEXT = '[idle]\ntimeout = "10m"\ngpu = "off"\nservers = false\ninhibitors = false\nsessions = false\n'


QUIET = config.parse(QUIET_TEXT)


BOOT = "boot-1"


class Recorder:
    def __init__(self, left: list[str] | None = None, suspend_error: Exception | None = None,
                 cannot_wake: list[str] | None = None, can: str = "yes") -> None:
        self.calls: list[str] = []
        self.can = can  # logind's answer to Can<Action>
        self.left, self.suspend_error = left or [], suspend_error
        self.cannot_wake = cannot_wake or []
        self.idle_watts: dict | None = None  # the GPUs' idle draw, as the idle checks measured it

    def ops(self) -> SystemOps:
        def stop(timeout: float) -> list[str]:
            self.calls.append("stop")
            return self.left

        def sleep(action: str) -> None:
            self.calls.append(action)  # "suspend", unless [idle] action says otherwise
            if self.suspend_error:
                raise self.suspend_error

        def arm(_proxies: object) -> list[str]:
            self.calls.append("arm")
            return self.cannot_wake

        return SystemOps(stop_servers=stop, start_servers=lambda: self.calls.append("start"),
                         sleep=sleep, arm_wake_on_lan=arm,
                         wake_on_lan_problems=lambda _proxies: self.cannot_wake,
                         idle_watts=lambda: self.idle_watts, can_sleep=lambda _action: self.can,
                         idle_blind_spots=lambda _config: [])


@contextlib.contextmanager
def a_proxy_told(settings: str) -> Iterator[tuple[socket.socket, config.Config]]:
    """A proxy's hint socket on loopback, and a box's config ([idle] and more) that tells it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.settimeout(10)
        yield proxy, config.parse(f'[idle]\ngpu = "off"\nservers = false\ninhibitors = false\n'
                                  f'{settings}[notify]\nproxies = '
                                  f'["127.0.0.1:{proxy.getsockname()[1]}"]\n')


def stored(path: Path) -> dict:
    return json.loads(path.read_text())


def checks_every_30s(config_: config.Config, path: Path, start: float, end: float,
                     ops: SystemOps) -> Action:
    """The timer's checks from start to end: only time between looks counts as idle."""
    now, action = start, Action.STAY_AWAKE
    while now <= end and action is Action.STAY_AWAKE:
        action = check(config_, path, dry_run=False, ops=ops, boot_id=BOOT, now=now)
        now += 30.0
    return action
