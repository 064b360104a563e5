"""sleepyllama: the command a person types, on either host.

  status      what is installed and what it is doing (units, last idle verdict, GPUs, backends)
  wake        wake a backend now and wait until it is ready
  sleep-now   the idle checker's sleep sequence, at once
  check       validate the config and the environment: every problem in one list
  restart     after editing the config: validate it, then restart what it names
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import logs, systemd
from sleepyllama.command_line import program_parser
from sleepyllama.config import Config, ConfigError, ServerConfig, format_duration
from sleepyllama.host import state
from sleepyllama.host.activity import CANNOT_SHOW, Counter, Unreadable, judge, source_for
from sleepyllama.host.signals import Activity, AmdGpuSignal, GpuSignal
from sleepyllama.host.supervisor import health
from sleepyllama.proxy.probe import probe
from sleepyllama.proxy.program import make_sender, pick_table
from sleepyllama.proxy.wol import WakeSchedule

HOOK = Path("/usr/lib/systemd/system-sleep/sleepyllama")
WAKE_PROBE_INTERVAL = 0.5


def expected_units(config: Config) -> list[str]:
    units = []
    for name in config.proxies:
        units += [f"sleepyllama-proxy@{name}.socket", f"sleepyllama-proxy@{name}.service"]
    for name in config.servers:
        units.append(f"sleepyllama-server@{name}.service")
    if config.servers:
        units += ["sleepyllama-servers.target", "sleepyllama-idle.timer",
                  "sleepyllama-sleep.service"]
    return units


# -- status -----------------------------------------------------------------------------------

RESTART_HINT = "fix what it says, then: sudo sleepyllama restart"


def unit_rows(expected: list[str]) -> list[dict]:
    """Each expected unit, and any other sleepyllama unit systemd has loaded, with its state."""
    loaded = sorted(name for name, _state in systemd.units("sleepyllama-*"))
    rows = []
    for name in [*expected, *(name for name in loaded if name not in expected)]:
        unit = systemd.unit_details(name)
        rows.append({"unit": name, "active": unit.active, "status": unit.status,
                     "result": unit.result, "restarts": unit.restarts})
    return rows


def failed_words(row: dict) -> str:
    """"failed (exit-code) after 5 restarts": systemd stopped restarting it."""
    words = "failed" + (f" ({row['result']})" if row["result"] not in ("", "success") else "")
    return words + (f" after {row['restarts']} restarts" if row["restarts"] else "")


def broken(row: dict) -> bool:
    return row["active"] == "failed" or (row["active"] == "activating" and row["restarts"] > 0)


def gather_status(config: Config | None, config_error: ConfigError | None = None,
                  path: Path | None = None) -> dict:
    report: dict = {"config": str(config.path if config else path), "units": [], "proxies": [],
                    "servers": []}
    if config_error is not None:
        report["config_error"] = str(config_error)
    try:
        report["units"] = unit_rows(expected_units(config) if config else [])
    except Exception as error:  # no system bus, not systemd: report it, show the rest
        report["systemd_error"] = str(error)
    if config is None:
        return report
    for proxy in config.proxies.values():
        ready, why = probe(proxy.health_url, proxy.backend)
        report["proxies"].append({"name": proxy.name, "backend": str(proxy.backend),
                                  "ready": ready, "answer": why})
    try:
        counters = state.counters(state.load(state.state_path())[1]) if config.servers else {}
    except PermissionError:
        counters = {}
    for server in config.servers.values():
        report["servers"].append(server_report(server, counters.get(server.name)))
    if config.servers:
        report["idle"] = idle_report(config)
        gpu_status(config.idle.gpu, report)
    return report


def gpu_status(mode: str, report: dict) -> None:
    try:
        if mode == "amdgpu":
            report["amd_gpus"] = AmdGpuSignal().query()
        elif mode != "off" or shutil.which("nvidia-smi"):
            report["gpus"] = [{"index": g.index, "pstate": g.pstate, "utilization": g.utilization}
                              for g in GpuSignal("pstate").query()]
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        report["gpus_error"] = str(error)


def server_report(server: ServerConfig, counter: Counter | None) -> dict:
    """What the server is doing now, read as the idle check reads it (never waking its model),
    compared with the counter the last idle check stored."""
    try:
        busy, reason = judge(server.name, source_for(server, timeout=2.0, read_slots=False).look(), counter,
                             time.time())
        activity = Activity.BUSY if busy else Activity.IDLE
    except Unreadable as error:
        activity, reason = Activity.UNKNOWN, f"{server.name}: {error}"
    return {"name": server.name, "kind": server.activity, "activity": activity.value,
            "reason": reason}


def idle_report(config: Config) -> dict:
    path = state.state_path()
    try:
        idle_state, record = state.load(path)
    except PermissionError:
        return {"state_file": str(path), "checked": False, "unreadable": True}
    if not record:
        return {"state_file": str(path), "checked": False}
    report = {"state_file": str(path), "checked": True, "verdict": record.get("verdict"),
              "reason": record.get("reason"), "checked_ago": time.time() - record["checked_at"],
              "idle_for": None, "sleep_in": None, "timeout": config.idle.timeout}
    try:
        same_boot = idle_state is not None and idle_state.boot_id == systemd.boot_id()
    except OSError:
        same_boot = False
    if same_boot and idle_state and idle_state.idle_since is not None:
        idle_for = time.monotonic() - idle_state.idle_since
        report["idle_for"] = idle_for
        report["sleep_in"] = max(0.0, config.idle.timeout - idle_for)
    return report


def print_status(report: dict) -> None:
    if "config_error" in report:
        print(f"config error: {report['config_error']}")
    if "systemd_error" in report:
        print(f"systemd: not reachable ({report['systemd_error']})")
    width = max((len(u["unit"]) for u in report["units"]), default=0)
    for unit in report["units"]:
        state = unit["active"]
        if state == "failed":
            state = failed_words(unit)
        elif broken(unit):
            state = f"restarting ({unit['restarts']} restarts)"
        print(f"{unit['unit']:<{width}}  {state:<10}  {unit['status']}".rstrip())
    if any(broken(unit) for unit in report["units"]):
        print(RESTART_HINT)
    for proxy in report["proxies"]:
        answer = "ready" if proxy["ready"] else "not ready"
        print(f"proxy {proxy['name']}: backend {proxy['backend']} {answer} ({proxy['answer']})")
    for server in report["servers"]:
        print(f"server {server['reason']} ({server['kind']})")
    idle = report.get("idle")
    if idle and idle.get("unreadable"):
        print(f"last idle check: {idle['state_file']} is readable by root only: sudo sleepyllama status")
    elif idle and not idle["checked"]:
        print(f"no idle check yet ({idle['state_file']})")
    elif idle:
        print(f"last idle check {idle['checked_ago']:.0f} s ago: {idle['verdict']}: {idle['reason']}")
        if idle["idle_for"] is not None:
            print(f"idle for {format_duration(round(idle['idle_for']))}, sleeping in "
                  f"{format_duration(round(idle['sleep_in']))} if nothing changes "
                  f"(timeout {format_duration(idle['timeout'])})")
    if report.get("gpus"):
        print("GPU  pstate  utilization")
        for gpu in report["gpus"]:
            pstate = "?" if gpu["pstate"] is None else f"P{gpu['pstate']}"
            utilization = "?" if gpu["utilization"] is None else f"{gpu['utilization']} %"
            print(f"{gpu['index']:<4} {pstate:<7} {utilization}")
    for card, percent in report.get("amd_gpus", {}).items():
        print(f"{card}: {percent} % busy")
    if report.get("gpus_error"):
        print(f"GPUs: {report['gpus_error']}")


# -- wake -------------------------------------------------------------------------------------

def wake(config: Config, name: str | None, timeout: float | None) -> int:
    if not config.proxies:
        raise ConfigError(f"{config.path}: no [proxy.NAME] table: sleepyllama wake runs on the "
                          "always-on host, where the proxy's table names the box to wake")
    if name is None and len(config.proxies) > 1:
        raise ConfigError("name the one to wake: sleepyllama wake NAME, with NAME one of "
                          + ", ".join(sorted(config.proxies)))
    proxy = pick_table(config, name)
    limit = proxy.wake_timeout if timeout is None else timeout
    sender, schedule = make_sender(proxy), WakeSchedule(proxy.wol_interval)
    started, sent, why = time.monotonic(), 0, ""
    interactive = sys.stderr.isatty()
    while True:
        now = time.monotonic()
        if schedule.due(now):
            sender.send()
            schedule.mark_sent(now)
            sent += 1
            if not interactive:
                print(f"sent {sender.describe()} ({sent})", file=sys.stderr)
        ready, why = probe(proxy.health_url, proxy.backend)
        elapsed = time.monotonic() - started
        if interactive:
            print(f"\rwaking {proxy.backend}: {elapsed:.0f} s, {sent} packets, last: {why}\033[K",
                  end="", file=sys.stderr, flush=True)
        if ready:
            print(("\n" if interactive else "") + f"{proxy.backend} is ready after {elapsed:.1f} s "
                  f"({sent} wake signals)", file=sys.stderr)
            return 0
        if elapsed >= limit:
            print(("\n" if interactive else "") + f"sleepyllama: {proxy.backend} did not wake within "
                  f"{format_duration(limit)} (last answer: {why}); see README, Troubleshooting",
                  file=sys.stderr)
            return 1
        time.sleep(WAKE_PROBE_INTERVAL)


# -- check ------------------------------------------------------------------------------------

@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    good: list[str] = field(default_factory=list)


def check(config: Config) -> Findings:
    found = Findings()
    found.good.append(f"{config.path} is valid")
    for proxy in config.proxies.values():
        try:
            socket.getaddrinfo(proxy.backend.host, proxy.backend.port)
        except OSError as error:
            found.warnings.append(f"[proxy.{proxy.name}] backend {proxy.backend.host}: cannot "
                                  f"resolve it ({error.strerror})")
    for server in config.servers.values():
        program = server.command[0]
        if not (shutil.which(program) or (os.path.isfile(program) and os.access(program, os.X_OK))):
            found.errors.append(f"[server.{server.name}] command: {program} is not an "
                                "executable file")
        check_activity(server, config.idle.servers, found)
        check_paths(server, found)
        check_reachable(server, config, found)
        if server.activity == "none" and config.idle.gpu == "off":
            found.warnings.append(f"[server.{server.name}] shows no requests and [idle] gpu = "
                                  "\"off\": nothing keeps the box up while it serves but a sleep "
                                  "inhibitor")
    if config.servers and config.idle.gpu != "off":
        check_gpus(config.idle.gpu, found)
    if config.servers:
        check_wake_on_lan(found)
        if not (HOOK.exists() and os.access(HOOK, os.X_OK)):
            found.errors.append(f"{HOOK} is missing: the servers would not restart after a resume "
                                "(sudo ./install.sh server ...)")
    check_units(config, found)
    return found


# flags whose value is a file the server reads at start (llama-server, whisper-server, llama-swap)
INPUT_FILE_FLAGS = {"-m", "--model", "-mm", "--mmproj", "-md", "--model-draft", "--lora",
                    "--control-vector", "--grammar-file", "--json-schema-file",
                    "--chat-template-file", "--config"}


def missing_inputs(command: tuple[str, ...]) -> list[str]:
    """Files a server command names as its inputs (a model, a config) that do not exist."""
    missing = []
    for flag, value in itertools.pairwise(command):
        named = flag in INPUT_FILE_FLAGS or (flag.startswith("--") and value.endswith(".gguf"))
        if named and "://" not in value and not os.path.exists(value):
            missing.append(f"{flag} {value}")
    return missing


def check_paths(server: ServerConfig, found: Findings) -> None:
    for item in missing_inputs(server.command):
        found.errors.append(f"[server.{server.name}] command: {item}: no such file (the server "
                            "would fail at each start)")


def listen_host(server: ServerConfig) -> str | None:
    """Where the server listens, from its command line; None when it cannot be told."""
    for flag, value in itertools.pairwise(server.command):
        if flag == "--host":
            return value
        if flag == "--listen" and server.activity == "llama-swap":
            return value.rpartition(":")[0].strip("[]")
    return "127.0.0.1" if server.activity == "llama-server" else None  # llama-server's default


def check_reachable(server: ServerConfig, config: Config, found: Findings) -> None:
    """A server that listens on loopback only cannot be reached by a proxy on another host."""
    host = listen_host(server)
    loopback = host is not None and (host == "localhost" or host.startswith("127.") or host == "::1")
    if loopback and not config.proxies:  # a proxy on this same host would reach it
        found.warnings.append(
            f"[server.{server.name}] listens on {host} only: a proxy on the always-on host cannot "
            "reach it; give the server --host 0.0.0.0 (or this box's LAN address)")


def check_activity(server: ServerConfig, servers_signal: bool, found: Findings) -> None:
    """What the idle check can see of this server's use, and what it cannot."""
    table = f"[server.{server.name}]"
    if not servers_signal:
        return
    if server.activity == "llama-server" and "--metrics" not in server.command:
        found.warnings.append(
            f"{table}: llama-server runs without --metrics: the idle check must read /slots "
            "instead, which counts as use and keeps llama-server's own --sleep-idle-seconds from "
            "ever unloading the model (add --metrics to its command)")
    elif CANNOT_SHOW[server.activity]:
        found.warnings.append(f"{table} activity = \"{server.activity}\": "
                              f"{CANNOT_SHOW[server.activity]}")
    else:
        found.good.append(f"{table}: requests counted from /metrics, model sleep from /props")


def check_gpus(mode: str, found: Findings) -> None:
    reading = AmdGpuSignal().read() if mode == "amdgpu" else GpuSignal(mode).read()
    if reading.activity is Activity.UNKNOWN:
        found.errors.append(f"[idle] gpu = \"{mode}\": {reading.reason}")
        return
    found.good.append(f"{'amdgpu' if mode == 'amdgpu' else 'nvidia-smi'}: {reading.reason}")
    if mode == "pstate":
        gpus = GpuSignal(mode).query()
        if gpus and all(g.pstate == 0 and g.utilization == 0 for g in gpus):
            found.warnings.append("every GPU is at P0 with 0 % utilization: some GPUs (P100, "
                                  "V100) have only P0 and would never look idle; set "
                                  "[idle] gpu = \"utilization\"")


def default_interface() -> str | None:
    try:
        routes = subprocess.run(["ip", "route", "show", "default"], capture_output=True,
                                text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\bdev (\S+)", routes)
    return match.group(1) if match else None


def check_wake_on_lan(found: Findings) -> None:
    interface = default_interface()
    if interface is None:
        found.warnings.append("no default route: cannot tell which network card must wake the box")
        return
    if shutil.which("ethtool") is None:
        found.warnings.append(f"ethtool is not installed: cannot check Wake-on-LAN on {interface} "
                              "(apt-get install ethtool)")
        return
    output = subprocess.run(["ethtool", interface], capture_output=True, text=True).stdout
    supports = re.search(r"Supports Wake-on:\s*(\S+)", output)
    current = re.search(r"^\s*Wake-on:\s*(\S+)", output, re.MULTILINE)
    if not supports or "g" not in supports.group(1):
        found.errors.append(f"{interface} does not support Wake-on-LAN by magic packet")
    elif not current or "g" not in current.group(1):
        found.errors.append(f"Wake-on-LAN is off on {interface}: sudo ethtool -s {interface} wol g "
                            "(README, Troubleshooting, shows how to keep it on across reboots)")
    else:
        found.good.append(f"Wake-on-LAN by magic packet is on for {interface}")


def check_units(config: Config, found: Findings) -> None:
    wanted = [u for u in expected_units(config) if not u.startswith("sleepyllama-proxy@")
              or u.endswith(".socket")]  # the proxy's service starts with its socket
    wanted = [u for u in wanted if u != "sleepyllama-servers.target"]
    try:
        states = {unit: systemd.unit_file_state(unit) for unit in wanted}
        rows = unit_rows(expected_units(config))
    except Exception as error:
        found.warnings.append(f"cannot ask systemd about the units ({error})")
        return
    for unit, unit_state in states.items():
        if unit_state == "not-found":
            found.errors.append(f"{unit} is not installed (sudo ./install.sh ...)")
        elif unit_state not in ("enabled", "enabled-runtime", "static"):
            found.errors.append(f"{unit} is {unit_state}: sudo systemctl enable --now {unit}")
        else:
            found.good.append(f"{unit} is {unit_state}")
    for row in rows:
        if broken(row):
            how = (failed_words(row) if row["active"] == "failed"
                   else f"restarting again and again ({row['restarts']} restarts)")
            why = row["status"] or " | ".join(systemd.journal_errors(row["unit"])) or (
                f"journalctl -u {row['unit']}")
            found.errors.append(f"{row['unit']} {how}: {why}; {RESTART_HINT}")
    for server in config.servers.values():
        unit = f"sleepyllama-server@{server.name}.service"
        if any(row["unit"] == unit and row["active"] == "active" for row in rows):
            ready, _alive, why = health(server.health_url)
            if not ready:
                found.warnings.append(f"{unit} runs but {server.health_url} says: {why}")


# -- restart ----------------------------------------------------------------------------------

def restart(config: Config) -> int:
    """Validated already: clear failed units and restart what the config names."""
    if os.geteuid() != 0:
        print("sleepyllama restart: run as root: sudo sleepyllama restart", file=sys.stderr)
        return 1
    # the servers are PartOf= their target: restarting it restarts each of them once
    actions: list[tuple[str, list[str]]] = []  # (unit to restart, units to clear first)
    for name in config.proxies:
        socket_unit, service = f"sleepyllama-proxy@{name}.socket", f"sleepyllama-proxy@{name}.service"
        actions.append((socket_unit, [socket_unit, service]))
    if config.servers:
        servers = [f"sleepyllama-server@{name}.service" for name in config.servers]
        actions += [("sleepyllama-servers.target", servers), ("sleepyllama-idle.timer", [])]
    for unit, clear in actions:
        if systemd.unit_details(unit).active == "not-found":
            print(f"{unit}: not installed (sudo ./install.sh ...)")
            continue
        for cleared in clear:
            details = systemd.unit_details(cleared)
            if details.active == "failed" or details.restarts:
                systemd.reset_failed(cleared)
                print(f"{cleared}: failed state cleared")
        systemd.restart(unit)
        print(f"{unit}: restarting" + (f" ({', '.join(clear)})" if clear else ""))
    if config.proxies:  # a running proxy reads its table anew
        for name in config.proxies:
            systemd.restart(f"sleepyllama-proxy@{name}.service", only_if_running=True)
    if config.servers:
        print("the servers load their models in the background: sleepyllama status shows when")
    return 0


def print_findings(found: Findings) -> None:
    for line in found.errors:
        print(f"error: {line}")
    for line in found.warnings:
        print(f"warning: {line}")
    for line in found.good:
        print(f"ok: {line}")
    print(f"{len(found.errors)} error(s), {len(found.warnings)} warning(s)")


# -- the command ------------------------------------------------------------------------------

EXAMPLES = {
    "status": "  sleepyllama status\n  sleepyllama status --json | jq .idle",
    "wake": "  sleepyllama wake            (the only [proxy.*] table)\n"
            "  sleepyllama wake llama --timeout 5m",
    "sleep-now": "  sudo sleepyllama sleep-now\n"
                 "  sudo sleepyllama sleep-now --force   (even if a signal says busy)",
    "check": "  sleepyllama check && echo ready to go",
    "restart": "  sudo sleepyllama restart   (after editing /etc/sleepyllama/sleepyllama.toml)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser("sleepyllama", __doc__.split("\n\n")[0],
                            [line.strip() for text in EXAMPLES.values() for line in text.splitlines()],
                            verbose=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text,
                                   epilog="examples:\n" + EXAMPLES[name],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

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
                               help="suspend even if a signal says busy")
    command("check", "Validate the config and the environment and list every error and "
            "warning, each with its fix: nvidia-smi, server commands and their model files, "
            "Wake-on-LAN, units that failed or restart again and again. Exits 1 on any error.")
    command("restart", "After editing the config: validate it, clear failed units and restart "
            "what it names (proxies' sockets, servers, the idle timer). Needs root.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama")
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
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
        if args.command == "sleep-now":
            return sleep_now_command(config, args.force)
        found = check(config)
        print_findings(found)
        return 1 if found.errors else 0
    except ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return configuration.EX_CONFIG


def sleep_now_command(config: Config, force: bool) -> int:
    from sleepyllama.host.idle_check import signals_for
    from sleepyllama.host.suspend import sleep_now

    if os.geteuid() != 0:
        print("sleepyllama sleep-now: run as root: sudo sleepyllama sleep-now", file=sys.stderr)
        return 1
    _idle_state, record = state.load(state.state_path())
    signals = [] if force else signals_for(config, state.counters(record))
    return 0 if sleep_now(config, signals, "asked by sleepyllama sleep-now") else 1


if __name__ == "__main__":
    sys.exit(main())
