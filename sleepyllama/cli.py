"""sleepyllama: the command a person types, on either host.

  status      what is installed and what it is doing (units, last idle verdict, GPUs, backends)
  wake        wake a backend now and wait until it is ready
  sleep-now   the idle checker's sleep sequence, at once
  check       validate the config and the environment: every problem in one list
  restart     after editing the config: validate it, then restart what it names
  stay-awake  keep the GPU box up for a while (a logind sleep inhibitor), or stop doing so
  history     how long the box slept, what woke it, and what that saved
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import history, learned, ledger, logs, steer, systemd
from sleepyllama.checks import check, input_problems, print_findings
from sleepyllama.command_line import program_parser
from sleepyllama.config import Config, ConfigError, ServerConfig
from sleepyllama.host import schedule, state
from sleepyllama.host import stay_awake as staying
from sleepyllama.proxy.probe import hint as probe_hint
from sleepyllama.proxy.probe import probe
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wol import WakeSchedule, make_sender
from sleepyllama.status import gather_status, print_status
from sleepyllama.words import format_duration

WAKE_PROBE_INTERVAL = 0.5


# -- wake -------------------------------------------------------------------------------------

def wake(config: Config, name: str | None, timeout: float | None) -> int:
    if not config.proxies:
        raise ConfigError(f"{config.path}: no [proxy.NAME] table: sleepyllama wake runs on the "
                          "always-on host, where the proxy's table names the box to wake")
    if name is None and len(config.proxies) > 1:
        raise ConfigError("name the one to wake: sleepyllama wake NAME, with NAME one of "
                          + ", ".join(sorted(config.proxies)))
    proxy = config.pick_proxy(name)
    limit = proxy.wake_timeout if timeout is None else timeout
    sender, schedule = make_sender(proxy), WakeSchedule(proxy.wol_interval)
    started, sent, why = time.monotonic(), 0, ""
    record = WakeRecord()  # is the box up with nothing listening, for longer than its server needs?
    interactive = sys.stderr.isatty()
    while True:
        now = time.monotonic()
        if schedule.due(now):
            if sender.send():
                sent += 1
                if not interactive:
                    print(f"sent {sender.describe()} ({sent})", file=sys.stderr)
            schedule.mark_sent(now)
        ready, why = probe(proxy)
        elapsed = time.monotonic() - started
        record.probed(why, elapsed)
        if interactive:
            print(f"\rwaking {proxy.backend}: {elapsed:.0f} s, {sent} packets, last: {why}\033[K",
                  end="", file=sys.stderr, flush=True)
        if ready:
            print(("\n" if interactive else "") + f"{proxy.backend} is ready after {elapsed:.1f} s "
                  f"({sent} wake signals)", file=sys.stderr)
            return 0
        if not ready and record.refused_too_long(elapsed, proxy.kind):
            print(("\n" if interactive else "") + f"sleepyllama: {probe_hint(why, proxy.backend)} "
                  f"(refused for {elapsed - (record.refused_since or 0):.0f} s, longer than a "
                  "server needs to start listening)", file=sys.stderr)
            return 1
        if elapsed >= limit:
            hint = probe_hint(why, proxy.backend)
            print(("\n" if interactive else "") + f"sleepyllama: {proxy.backend} did not wake within "
                  f"{format_duration(limit)} (last answer: {why}); "
                  + (f"{hint}" if hint else "see README, Troubleshooting"), file=sys.stderr)
            return 1
        time.sleep(WAKE_PROBE_INTERVAL)


# -- restart ----------------------------------------------------------------------------------

def clear_failed(units: list[str]) -> None:
    """A unit that failed, or that systemd restarted, starts afresh: its start limit too."""
    for unit in units:
        details = systemd.unit_details(unit)
        if details.active == "failed" or details.restarts:
            systemd.reset_failed(unit)
            print(f"{unit}: failed state cleared")


def reload_proxy(name: str) -> None:
    """A proxy reads its table anew without a restart: the clients it holds, answers or splices
    stay (an edit of the config dropped every held request and cut every stream). Its socket,
    whose address install.sh writes, is started again only if it is not listening."""
    socket_unit, service = f"sleepyllama-proxy@{name}.socket", f"sleepyllama-proxy@{name}.service"
    if systemd.unit_details(socket_unit).active == "not-found":
        print(f"{socket_unit}: not installed (sudo ./install.sh ...)")
        return
    clear_failed([socket_unit, service])
    if systemd.unit_details(socket_unit).active != "active":
        systemd.restart(socket_unit)
        print(f"{socket_unit}: listening again")
    if systemd.unit_details(service).active == "active":
        systemd.reload(service)
        print(f"{service}: config reloaded (held clients and streams kept)")


def running_command(unit: str) -> tuple[str, ...] | None:
    """The command a server's unit runs now (its supervisor's child); None when it runs
    none, or it cannot be read."""
    pid = systemd.show(unit, "MainPID").get("MainPID", "0")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        argv = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")[:-1]
    except (OSError, IndexError, ValueError):
        return None
    return tuple(arg.decode(errors="replace") for arg in argv)


def runs(command: tuple[str, ...], argv: tuple[str, ...] | None) -> bool:
    """Whether a process's argv is `command` run: the same, or, for a script, its interpreter
    before it (the kernel runs "#!/usr/bin/python3" scripts as python3 SCRIPT ARGS), the
    program found on PATH by its name."""
    if argv is None or len(argv) < len(command):
        return False
    tail = argv[len(argv) - len(command):]
    return tail[1:] == command[1:] and Path(tail[0]).name == Path(command[0]).name


def restart_server(server: ServerConfig) -> None:
    """A server is restarted (its model reloads) only where it does not run its table's
    command: an edit of [idle], a proxy or another server leaves its model loaded."""
    unit = systemd.server_unit(server.name)
    if systemd.unit_details(unit).active == "not-found":
        print(f"{unit}: not installed (sudo ./install.sh server ...)")
        return
    if runs(server.command, running_command(unit)):
        print(f"{unit}: runs its command as configured: kept running, its model loaded (its "
              f"other settings apply at its next start: sudo systemctl restart {unit})")
        return
    clear_failed([unit])
    systemd.restart(unit)
    print(f"{unit}: restarting (its command changed, or it was not running)")


def restart(config: Config) -> int:
    """Validated already: clear failed units and restart what the config names."""
    if os.geteuid() != 0:
        print("sleepyllama restart: run as root: sudo sleepyllama restart", file=sys.stderr)
        return 1
    # what check would say: a model file that is not there, or that the servers' user may not
    # read, fails each start, so nothing is restarted into a loop of failures
    missing = [line for server in config.servers.values() for line in input_problems(server)]
    if missing:
        for line in missing:
            print(f"sleepyllama restart: {line}", file=sys.stderr)
        print("sleepyllama restart: nothing restarted; fix the above first", file=sys.stderr)
        return 1
    for name in config.proxies:
        reload_proxy(name)
    for server in config.servers.values():
        restart_server(server)
    if config.servers:
        # a failed idle check (a broken state file, say) is cleared with its timer; the
        # servers' target starts whatever of them is not running
        for unit, clear in (("sleepyllama-idle.timer", ["sleepyllama-idle.service"]),
                            ("sleepyllama-servers.target", [])):
            if systemd.unit_details(unit).active == "not-found":
                print(f"{unit}: not installed (sudo ./install.sh ...)")
                continue
            clear_failed(clear)
            if unit.endswith(".target"):
                systemd.systemctl("start", "--no-block", unit)
            else:
                systemd.restart(unit)
                print(f"{unit}: restarting ({', '.join(clear)})")
    if config.servers:
        timer = schedule.install(config.schedule)
        if timer != "unchanged":
            print(f"{schedule.TIMER}: {timer} from [schedule] awake")
        print("the servers load their models in the background: sleepyllama status shows when")
    return 0


# -- the command ------------------------------------------------------------------------------

EXAMPLES = {
    "status": "  sleepyllama status\n  sleepyllama status --json | jq .idle",
    "wake": "  sleepyllama wake            (the only [proxy.*] table)\n"
            "  sleepyllama wake llama --timeout 5m",
    "sleep-now": "  sudo sleepyllama sleep-now\n"
                 "  sudo sleepyllama sleep-now --force   (even if a signal says busy)\n"
                 "  sudo sleepyllama sleep-now --box llama   (from the always-on host)",
    "check": "  sleepyllama check && echo ready to go",
    "restart": "  sudo sleepyllama restart   (after editing /etc/sleepyllama/sleepyllama.toml)",
    "stay-awake": "  sudo sleepyllama stay-awake 3h\n  sudo sleepyllama stay-awake --cancel\n"
                  "  sudo sleepyllama stay-awake 3h --box llama   (from the always-on host)",
    "history": "  sleepyllama history\n  sleepyllama history --days 30 --json | jq .kwh_saved",
}


def positive_duration(text: str) -> float:
    try:
        seconds = configuration.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is less than a second")
    return seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser("sleepyllama", __doc__.split("\n\n")[0],
                            [line.strip() for text in EXAMPLES.values() for line in text.splitlines()],
                            verbose=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text,
                                  epilog="examples:\n" + EXAMPLES[name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        # as people type it: `sleepyllama check --config FILE` as well as before the command
        sub.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                         help=f"config file (default: {configuration.DEFAULT_PATH})")
        return sub

    status = command("status", "What is installed and what it is doing: each unit's state and "
                     "STATUS line, whether each backend answers, the last idle verdict, the GPUs.")
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    wake_command = command("wake", "Wake a backend now: send its wake signals and wait, with a "
                           "progress line, until it is ready. Exits 1 with the reason on timeout.")
    wake_command.add_argument("name", nargs="?", help="which [proxy.NAME] (default: the only one)")
    wake_command.add_argument("--timeout", type=configuration.parse_duration,
                              help="give up after this long (default: its wake_timeout)")
    sleep_command = command("sleep-now", "Run the idle checker's sleep sequence at once: one "
                            "last look at the signals, stop the servers, ask logind to suspend. "
                            "Needs root.")
    sleep_command.add_argument("--force", action="store_true",
                               help="suspend even if a signal says busy (on the box itself)")
    box_help = ("from the always-on host: the GPU box behind [proxy.NAME], asked through its "
                "signed commands (install.sh --steer-secret-file); the default there")
    command("check", "Validate the config and the environment and list every error and "
            "warning, each with its fix: nvidia-smi, server commands and their model files, "
            "Wake-on-LAN, units that failed or restart again and again. Exits 1 on any error.")
    command("restart", "After editing the config: validate it, clear failed units and restart "
            "what it names (proxies' sockets, servers, the idle timer). Needs root.")
    past = command("history", "How long the box slept, day by day in half-hours, what woke it "
                   "and after how long it was ready, and the energy that saved.")
    past.add_argument("--days", type=int, default=7, choices=range(1, 367), metavar="N",
                      help="how many days back (default 7)")
    past.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    stay = command("stay-awake", "Keep the GPU box up for DURATION through a logind sleep "
                   "inhibitor that the idle check, a lid and `systemctl suspend` respect; a new "
                   "DURATION replaces the old one. Needs root.")
    group = stay.add_mutually_exclusive_group(required=True)
    group.add_argument("duration", nargs="?", type=positive_duration,
                       help="how long: 90m, 3h, 1h30m")
    group.add_argument("--cancel", action="store_true", help="let the idle check decide again")
    for sub in (stay, sleep_command):
        sub.add_argument("--box", metavar="NAME", nargs="?", const="", default=None,
                         help=box_help)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama")
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
    if args.command == "stay-awake" and args.box is None and not from_afar(args.config):
        return stay_awake(args.duration, args.cancel)  # needs no config: one may be broken
    try:
        config = configuration.load(args.config)
    except ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        if args.command == "status":  # the units too: what runs, what failed
            report = gather_status(None, error, args.config)
            print(json.dumps(report, indent=2) if args.json else "", end="\n" if args.json else "")
            if not args.json:
                print_status(report)
        return configuration.EX_CONFIG
    try:
        if args.command == "status":
            report = gather_status(config)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                print_status(report)
            return 0
        if args.command == "wake":
            return wake(config, args.name, args.timeout)
        if args.command == "restart":
            return restart(config)
        if args.command == "history":
            return history_command(config, args.days, args.json)
        if args.command == "stay-awake":
            return steer_box(config, args.box, "stay-awake-cancel" if args.cancel else "stay-awake",
                             int(args.duration or 0))
        if args.command == "sleep-now" and (args.box is not None or from_afar(args.config)):
            if args.force:
                print("sleepyllama sleep-now: --force is for the box itself; from here the box's "
                      "own busy verdict decides", file=sys.stderr)
                return 2
            return steer_box(config, args.box, "sleep-now")
        if args.command == "sleep-now":
            return sleep_now_command(config, args.force)
        found = check(config)
        print_findings(found)
        return 1 if found.errors else 0
    except ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return configuration.EX_CONFIG


def stay_awake(duration: float | None, cancel: bool) -> int:
    """Hold a logind sleep inhibitor for `duration` (host/stay_awake.py), or drop the one held."""
    if os.geteuid() != 0:
        print("sleepyllama stay-awake: run as root: sudo sleepyllama stay-awake ...", file=sys.stderr)
        return 1
    if cancel:
        print(staying.cancel())
        return 0
    assert duration is not None
    held, said = staying.start(duration)
    if not held:
        print(f"sleepyllama stay-awake: {said}", file=sys.stderr)
        return 1
    print(f"{said}; sudo sleepyllama stay-awake --cancel ends it")
    return 0


def from_afar(path: Path) -> bool:
    """Whether this is the always-on host: its config has proxies and no servers."""
    try:
        config = configuration.load(path)
    except ConfigError:
        return False
    return bool(config.proxies) and not config.servers


def steer_box(config: Config, name: str | None, command: str, seconds: int = 0) -> int:
    """A signed command to the GPU box behind [proxy.NAME] (steer.py), and its answer."""
    box = config.pick_proxy(name or None).backend.host
    try:
        secret = steer.read_secret()
        taken, said = steer.send(secret, box, config.steer.port, command, seconds)
    except PermissionError:
        print(f"sleepyllama: {steer.SECRET_FILE} is root's: sudo sleepyllama ...", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return 1
    print(f"{box}: {said}")
    return 0 if taken else 1


def history_command(config: Config, count: int, as_json: bool) -> int:
    try:
        idle_watts = state.idle_watts(state.load(state.state_path())[1])
    except PermissionError:
        idle_watts = None
    unreadable: list[str] = []
    entries = history.read_ledgers(unreadable=unreadable)
    now = time.time()
    data = history.report(entries, config.energy, idle_watts, count, now,
                          gpu_box=bool(config.servers), unreadable=unreadable)
    data["prewakes"] = learned_prewakes(config, now, unreadable)
    print(json.dumps(data, indent=2) if as_json else history.render(data, sys.stdout.isatty()))
    for prewakes in data["prewakes"]:
        print(prewakes["summary"])
    if unreadable:
        print(f"(not shown: {', '.join(unreadable)} can be read by root only: "
              "sudo sleepyllama history)", file=sys.stderr)
    return 0


def learned_prewakes(config: Config, now: float, unreadable: list[str]) -> list[dict]:
    """Each proxy's learned pre-wakes, from its ledger, whether they are on or not."""
    found = []
    for name, proxy in sorted(config.proxies.items()):
        path = history.PROXY_STATE / f"{name}.ledger.jsonl"
        try:
            entries = ledger.read(path)
        except PermissionError:
            if str(path) not in unreadable and str(history.PROXY_STATE) not in unreadable:
                unreadable.append(str(path))
            continue
        planned = learned.plan(entries, now, proxy.prewake_never)
        upcoming = next((prewake for prewake in planned if not prewake.never), None)
        found.append({"proxy": name, "mode": proxy.prewake, "learned": learned.describe(planned),
                      "next": None if upcoming is None else round(upcoming.at),
                      "cause": "" if upcoming is None else upcoming.cause,
                      "summary": learned.summary(name, proxy.prewake == "learned", planned)})
    return found


def sleep_now_command(config: Config, force: bool) -> int:
    from sleepyllama.host.idle_check import signals_for
    from sleepyllama.host.suspend import sleep_now

    if os.geteuid() != 0:
        print("sleepyllama sleep-now: run as root: sudo sleepyllama sleep-now", file=sys.stderr)
        return 1
    _idle_state, record = state.load(state.state_path())
    signals = [] if force else signals_for(config, record)
    return 0 if sleep_now(config, signals, "asked by sleepyllama sleep-now") else 1


if __name__ == "__main__":
    sys.exit(main())
