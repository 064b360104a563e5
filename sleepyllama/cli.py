"""sleepyllama: the command a person types, on either host.

  status      what is installed and what it is doing (units, last idle verdict, GPUs, backends)
  wake        wake a backend now and wait until it is ready
  sleep-now   the idle checker's sleep sequence, at once
  check       validate the config and the environment: every problem in one list
"""

from __future__ import annotations

import argparse
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

def gather_status(config: Config) -> dict:
    report: dict = {"config": str(config.path), "units": [], "proxies": [], "servers": []}
    try:
        for unit in expected_units(config):
            active, status = systemd.unit_state(unit)
            report["units"].append({"unit": unit, "active": active, "status": status})
    except Exception as error:  # no system bus, not systemd: report it, show the rest
        report["systemd_error"] = str(error)
    for proxy in config.proxies.values():
        ready, why = probe(proxy.health_url, proxy.backend)
        report["proxies"].append({"name": proxy.name, "backend": str(proxy.backend),
                                  "ready": ready, "answer": why})
    counters = state.counters(state.load(state.state_path())[1]) if config.servers else {}
    for server in config.servers.values():
        report["servers"].append(server_report(server, counters.get(server.name)))
    if config.servers:
        report["idle"] = idle_report(config)
        if config.idle.gpu != "off" or shutil.which("nvidia-smi"):
            try:
                report["gpus"] = [{"index": g.index, "pstate": g.pstate, "utilization": g.utilization}
                                  for g in GpuSignal(config.idle.gpu).query()]
            except (OSError, ValueError, subprocess.SubprocessError) as error:
                report["gpus_error"] = str(error)
    return report


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
    idle_state, record = state.load(path)
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
    if "systemd_error" in report:
        print(f"systemd: not reachable ({report['systemd_error']})")
    width = max((len(u["unit"]) for u in report["units"]), default=0)
    for unit in report["units"]:
        line = f"{unit['unit']:<{width}}  {unit['active']:<10}"
        print((line + "  " + unit["status"]).rstrip())
    for proxy in report["proxies"]:
        answer = "ready" if proxy["ready"] else "not ready"
        print(f"proxy {proxy['name']}: backend {proxy['backend']} {answer} ({proxy['answer']})")
    for server in report["servers"]:
        print(f"server {server['reason']} ({server['kind']})")
    idle = report.get("idle")
    if idle and not idle["checked"]:
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
    if report.get("gpus_error"):
        print(f"GPUs: {report['gpus_error']}")


# -- wake -------------------------------------------------------------------------------------

def wake(config: Config, name: str | None, timeout: float | None) -> int:
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
    for server in config.servers.values():
        unit = f"sleepyllama-server@{server.name}.service"
        if systemd.unit_state(unit)[0] == "active":
            ready, _alive, why = health(server.health_url)
            if not ready:
                found.warnings.append(f"{unit} runs but {server.health_url} says: {why}")


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
    sleep_command = command("sleep-now", "Run the idle checker's sleep sequence at once: stop "
                            "the servers, check the signals again, ask logind to suspend.")
    sleep_command.add_argument("--force", action="store_true",
                               help="suspend even if a signal says busy after the servers stopped")
    command("check", "Validate the config and the environment and list every error and "
            "warning: nvidia-smi, server commands, Wake-on-LAN, units. Exits 1 on any error.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama")
    logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
    try:
        config = configuration.load(args.config)
    except ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
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
        if args.command == "sleep-now":
            from sleepyllama.host.idle_check import signals_for
            from sleepyllama.host.suspend import sleep_now

            _idle_state, record = state.load(state.state_path())
            signals = [] if args.force else signals_for(config, state.counters(record))
            return 0 if sleep_now(config, signals, "asked by sleepyllama sleep-now") else 1
        found = check(config)
        print_findings(found)
        return 1 if found.errors else 0
    except ConfigError as error:
        print(f"sleepyllama: {error}", file=sys.stderr)
        return configuration.EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
