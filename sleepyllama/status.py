"""sleepyllama status: what is installed and what it is doing, on either host.

Each unit's state and STATUS line (a failed one with why), whether each backend answers, what
each server is doing (read as the idle check reads it, never waking a model), the last idle
verdict, the GPUs. Shown even when the config has an error: then the units alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sleepyllama import history, ledger, systemd
from sleepyllama.config import Config, ConfigError, ServerConfig
from sleepyllama.host import state
from sleepyllama.host.activity import Counter, Unreadable, judge, source_for
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.gpu import AmdGpuSignal, GpuSignal
from sleepyllama.proxy.probe import probe
from sleepyllama.words import count, format_duration


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
    return words + (f" after {count(row['restarts'], 'restarts')}" if row["restarts"] else "")


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
        ready, why = probe(proxy)
        report["proxies"].append({"name": proxy.name, "backend": str(proxy.backend),
                                  "ready": ready, "answer": why, **proxy_memory(proxy.name)})
    try:
        counters = state.counters(state.load(state.state_path())[1]) if config.servers else {}
    except PermissionError:
        counters = {}
    for server in config.servers.values():
        report["servers"].append(server_report(server, counters.get(server.name)))
    unreadable: list[str] = []
    entries = history.read_ledgers(unreadable=unreadable)
    if unreadable:
        report["needs_root"] = unreadable
    if entries:
        week = history.report(entries, config.energy, report_idle_watts(), 7, time.time(),
                              gpu_box=bool(config.servers), unreadable=unreadable)
        report["history"] = week
    if config.servers:
        report["idle"] = idle_report(config)
        try:
            report["stay_awake"] = [why for _what, who, why, mode, _uid, _pid
                                    in systemd.list_inhibitors()
                                    if who == "sleepyllama" and why.startswith("stay-awake")]
        except Exception as error:  # no bus: the idle verdict still says what it saw
            report["stay_awake_error"] = str(error)
        gpu_status(config.idle.gpu, report)
    return report


def proxy_memory(name: str) -> dict:
    """What the proxy kept for answering while the backend sleeps (the age of each answer), and
    its last wake as its ledger has it: who woke the box, with which request, and how it ended."""
    memory: dict = {}
    try:
        stored = json.loads((history.PROXY_STATE / f"{name}.answers.json").read_text())
        memory["cached"] = {target: time.time() - entry["fetched_at"]
                            for target, entry in stored["entries"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or not root (the DynamicUser's directory is private)
    try:
        entries = ledger.read(history.PROXY_STATE / f"{name}.ledger.jsonl")
    except PermissionError:
        entries = []
    # from the ledger, not the journal: --purge forgets it, and it says how the wake ended
    woken = [wake for wake in history.wakes(entries) if not wake.what.startswith(("resumed",
                                                                                  "booted"))]
    if woken:
        memory["last_wake"] = (f"{time.strftime('%a %H:%M', time.localtime(woken[-1].at))}  "
                               f"{woken[-1].what}")
    typical = history.typical_wake(entries)
    if typical is not None:
        memory["typical_wake"] = typical
        memory["typical_first_answer"] = history.typical_first_answer(entries)
    return memory


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
        busy, reason = judge(server.name, source_for(server, timeout=2.0, gentle=True).look(), counter,
                             time.time())
        activity = Activity.BUSY if busy else Activity.IDLE
    except Unreadable as error:
        activity, reason = Activity.UNKNOWN, f"{server.name}: {error}"
    return {"name": server.name, "kind": server.activity, "activity": activity.value,
            "reason": reason}


def report_idle_watts() -> dict | None:
    try:
        return state.idle_watts(state.load(state.state_path())[1])
    except PermissionError:
        return None


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
            state = f"restarting ({count(unit['restarts'], 'restarts')})"
        print(f"{unit['unit']:<{width}}  {state:<10}  {unit['status']}".rstrip())
    if any(broken(unit) for unit in report["units"]):
        print(RESTART_HINT)
    if report.get("history"):
        print(history.last_day_line(report["history"], sys.stdout.isatty()))
    for proxy in report["proxies"]:
        answer = "ready" if proxy["ready"] else "not ready"
        print(f"proxy {proxy['name']}: backend {proxy['backend']} {answer} ({proxy['answer']})")
        for target, age in proxy.get("cached", {}).items():
            print(f"  answers GET {target} while asleep: kept {format_duration(round(age))} ago")
        if proxy.get("last_wake"):
            print(f"  last wake: {proxy['last_wake']}")
        if proxy.get("typical_wake"):
            print(f"  {history.wake_cost(proxy['typical_wake'], proxy.get('typical_first_answer'))}")
    if report.get("needs_root"):
        print(f"(the records in {', '.join(report['needs_root'])} are readable by root "
              "only: sudo sleepyllama status)")
    for server in report["servers"]:
        print(f"server {server['reason']} ({server['kind']})")
    idle = report.get("idle")
    for why in report.get("stay_awake", []):
        print(f"{why} (sudo sleepyllama stay-awake --cancel ends it)")
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
