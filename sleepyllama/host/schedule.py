"""The wake timer of the awake windows ([schedule] awake = ["Mon..Fri 08:30..18:00"]).

Inside a window the idle check stays awake and says why (signals.py); at each window's start
sleepyllama-wake.timer (WakeSystem=yes, generated from the config) resumes the box from suspend
through the RTC and starts the servers, so the model is loaded before anyone asks. The windows
themselves, and their parsing, are shared (sleepyllama/windows.py): the config reads them.

  python -m sleepyllama.host.schedule install [--config PATH]   (install.sh, sleepyllama restart)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sleepyllama import systemd
from sleepyllama.windows import Window

TIMER = Path("/etc/systemd/system/sleepyllama-wake.timer")


def timer_unit(windows: Sequence[Window]) -> str:
    calendars = "".join(f"OnCalendar={window.calendar}\n" for window in windows)
    return ("# written by sleepyllama from [schedule] awake in /etc/sleepyllama/sleepyllama.toml\n"
            "[Unit]\nDescription=sleepyllama: wake the box for its awake windows\n"
            "Documentation=https://github.com/sleepyllama/sleepyllama#schedules\n\n"
            "[Timer]\n" + calendars +
            "# resume a suspended box through the RTC alarm, and load the models for the window\n"
            "WakeSystem=yes\nUnit=sleepyllama-servers.target\nAccuracySec=1s\n\n"
            "[Install]\nWantedBy=timers.target\n")


def install(windows: Sequence[Window], path: Path = TIMER) -> str:
    """Write (or remove) the wake timer and tell systemd; "written", "removed" or "unchanged"."""
    wanted = timer_unit(windows) if windows else None
    present = path.read_text() if path.exists() else None
    if wanted == present:
        return "unchanged"
    if wanted is None:
        systemd.systemctl("disable", "--now", path.name)
        path.unlink()
        systemd.systemctl("daemon-reload")
        return "removed"
    path.write_text(wanted)
    path.chmod(0o644)
    systemd.systemctl("daemon-reload")
    systemd.systemctl("enable", "--now", "--quiet", path.name)
    systemd.systemctl("restart", path.name)  # new OnCalendar= lines
    return "written"


def main(argv: list[str] | None = None) -> int:
    from sleepyllama import config as configuration

    parser = argparse.ArgumentParser(prog="python -m sleepyllama.host.schedule",
                                     description="Write sleepyllama-wake.timer from [schedule].")
    parser.add_argument("action", choices=["install"])
    parser.add_argument("--config", type=Path, default=configuration.DEFAULT_PATH)
    args = parser.parse_args(argv)
    try:
        loaded = configuration.load(args.config)
    except configuration.ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return configuration.EX_CONFIG
    print(install(loaded.schedule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
