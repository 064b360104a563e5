"""`sudo ./install.sh upgrade`: the install.sh runs that would install this host as it is now,
from its installed config and drop-ins, so that an upgrade (a new clone or `git pull`, then one
line) repeats no argument by hand. install.sh changes only what it is given, so each run keeps
every other key of its table; the new code restarts what runs it (install.sh).

  python -m sleepyllama.upgrade [--config FILE] [--unit-dir DIR]

Prints each run's arguments, NUL-separated, each run ended by an empty argument (no shell
string is built from the config). Says on stderr what it cannot carry over.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama.config import Config

UNIT_DIR = Path("/etc/systemd/system")


def listen_of(drop_in: Path) -> str:
    """The address a socket unit's drop-in of install.sh's makes it listen on ("" if none)."""
    try:
        lines = drop_in.read_text().splitlines()
    except OSError:
        return ""
    found = [line.split("=", 1)[1].strip() for line in lines
             if line.startswith("ListenStream=") and line.split("=", 1)[1].strip()]
    return found[-1] if found else ""


def runs(config: Config, unit_dir: Path) -> tuple[list[list[str]], list[str]]:
    """(the install.sh runs, what cannot be carried over and why)."""
    found: list[list[str]] = []
    problems: list[str] = []
    web = listen_of(unit_dir / "sleepyllama-web.socket.d" / "listen.conf")
    for proxy in config.proxies.values():
        listen = listen_of(unit_dir / f"sleepyllama-proxy@{proxy.name}.socket.d" / "listen.conf")
        if not listen or proxy.mac is None:
            problems.append(f"[proxy.{proxy.name}]: not installed by install.sh (no listen "
                            "address in its socket's drop-in, or a wake_command): left as it is")
            continue
        found.append(["proxy", "--name", proxy.name, "--listen", listen,
                      "--backend", str(proxy.backend), "--mac", proxy.mac])
    for server in config.servers.values():
        found.append(["server", "--name", server.name, "--", *server.command])
    if web and found:
        found[0][found[0].index("--name") + 2:found[0].index("--name") + 2] = ["--web", web]
    return found, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sleepyllama.upgrade",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=configuration.DEFAULT_PATH)
    parser.add_argument("--unit-dir", type=Path, default=UNIT_DIR)
    args = parser.parse_args(argv)
    try:
        config = configuration.load(args.config)
    except configuration.ConfigError as error:
        print(f"install.sh upgrade: {error}", file=sys.stderr)
        return configuration.EX_CONFIG
    found, problems = runs(config, args.unit_dir)
    for problem in problems:
        print(f"install.sh upgrade: {problem}", file=sys.stderr)
    if not found:
        print(f"install.sh upgrade: {args.config} has no [proxy.*] or [server.*] table that "
              "install.sh made: install first (./install.sh --help)", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    for run in found:
        out.write(b"".join(arg.encode() + b"\0" for arg in run) + b"\0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
