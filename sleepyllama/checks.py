"""sleepyllama check: every problem of the config and the machine in one list, each with its fix."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from sleepyllama import kinds, systemd
from sleepyllama.config import Config, ConfigError, ProxyConfig, ServerConfig
from sleepyllama.host import nvidia_power, placement, ports, server_user, unit_view, wake_on_lan
from sleepyllama.host.activity import Unreadable, source_for
from sleepyllama.host.signals import sessions as sessions_signal
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.gpu import AmdGpuSignal, GpuSignal
from sleepyllama.host.supervisor import health, ready_status
from sleepyllama.host.suspend import sleep_advice
from sleepyllama.proxy import api_key
from sleepyllama.proxy.probe import hint as probe_hint
from sleepyllama.proxy.probe import http, probe
from sleepyllama.status import RESTART_HINT, broken, expected_units, failed_words, unit_rows
from sleepyllama.tools import bounded_output
from sleepyllama.words import count

HOOK = Path("/usr/lib/systemd/system-sleep/sleepyllama")


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
            continue
        check_backend(proxy, found)
    for server in config.servers.values():
        program = server.command[0]
        if not (shutil.which(program) or (os.path.isfile(program) and os.access(program, os.X_OK))):
            found.errors.append(f"[server.{server.name}] command: {program} is not an "
                                "executable file")
        check_activity(server, config.idle.servers, found)
        check_paths(server, found)
        check_reachable(server, config, found)
        if not kinds.get(server.activity).sees_requests and config.idle.gpu == "off":
            found.warnings.append(f"[server.{server.name}] shows no requests and [idle] gpu = "
                                  "\"off\": nothing keeps the box up while it serves but a sleep "
                                  "inhibitor")
    found.errors += unit_view.idle_blind_spots(config)
    check_ports(config, found)
    if config.servers and config.idle.gpu != "off":
        check_gpus(config.idle.gpu, found)
    if config.servers:
        check_nvidia_suspend(found)
    if config.servers and config.idle.sessions:
        check_sessions(found)
    if config.servers:
        check_sleep_action(config.idle.action, found)
        check_wake_on_lan(config, found)
        check_macs(found)
        if config.schedule:
            check_rtc(found)
        if not (HOOK.exists() and os.access(HOOK, os.X_OK)):
            found.errors.append(f"{HOOK} is missing: the servers would not restart after a resume "
                                "(sudo ./install.sh server ...)")
    if config.mqtt.broker is not None and config.proxies:
        check_mqtt(config, found)
    check_units(config, found)
    return found


def check_ports(config: Config, found: Findings) -> None:
    """Two servers on one port: the second fails to start, or worse, its READY is the first's."""
    holders: dict[str, str] = {}
    for server in config.servers.values():
        where = urlsplit(server.health_url).netloc
        if where in holders:
            found.errors.append(f"[server.{server.name}] and [server.{holders[where]}] both listen "
                                f"on {where}: give one of them another --port")
        holders.setdefault(where, server.name)
        check_port_holder(server, found)


def check_port_holder(server: ServerConfig, found: Findings) -> None:
    """Another program on the server's port (Ollama's own ollama.service on 11434, a
    hand-started llama-server): the server fails at each start until it is gone."""
    address = urlsplit(server.health_url)
    if address.port is None:
        return
    unit = f"sleepyllama-server@{server.name}.service"
    holders = ports.foreign_holders(address.hostname or "", address.port, unit)
    if any(not holder.command for holder in holders) and systemd.unit_details(
            unit).active in ("active", "activating", "reloading", "deactivating"):
        return  # ss hides whose it is from a non-root user: with the unit up, it is the server's
    for holder in holders:
        stop = (f"sudo systemctl disable --now {holder.unit}" if holder.unit
                else "stop it")
        found.errors.append(f"[server.{server.name}] port {address.port} is held by "
                            f"{holder.describe()}: the server cannot start there; {stop}, or "
                            "give the server another --port")


def check_backend(proxy: ProxyConfig, found: Findings) -> None:
    """Try the backend as the proxy would: ready, asleep (no answer), or up with nothing on its
    port (a wrong port or a loopback-only server, reported as "did not wake" 3 min later)."""
    table = f"[proxy.{proxy.name}]"
    ready, why = probe(proxy)
    hint = probe_hint(why, proxy.backend)
    if ready:
        found.good.append(f"{table} backend {proxy.backend} is ready ({why})")
        check_backend_key(proxy, found)
    elif hint:
        found.errors.append(f"{table} backend: {hint}")
    else:
        found.good.append(f"{table} backend {proxy.backend} does not answer now ({why}): asleep, "
                          "or not there (sleepyllama wake tries to wake it)")


def check_backend_key(proxy: ProxyConfig, found: Findings) -> None:
    """Whether the proxy can keep the model list of an awake backend: a key it wants and was
    not given, or a key it refuses, would leave every page load waking the box."""
    table = f"[proxy.{proxy.name}]"
    key_file = Path(proxy.api_key_file) if proxy.api_key_file else None
    if (key_file is not None and os.geteuid() != 0 and key_file.exists()
            and not os.access(key_file, os.R_OK)):
        # as install.sh sets it up: root's alone, handed to the proxy as a credential
        found.warnings.append(f"{table} api_key_file: {key_file} is readable by root only, as it "
                              "should be: not tried (sudo sleepyllama check tries it)")
        return
    try:
        key = api_key.read(proxy)
    except ConfigError as error:
        found.errors.append(str(error))
        return
    looks = [request.split(" ", 1)[1] for request in proxy.answer_while_asleep or ()]
    if not looks:
        return
    try:
        answer = http.get(f"http://{proxy.backend}{looks[0]}", timeout=5, allow_redirects=False,
                          headers={"Authorization": f"Bearer {key}"} if key else {})
    except requests.RequestException:
        return
    if answer.status_code == 401 and key:
        found.errors.append(f"{table} api_key_file: the backend refuses the key in "
                            f"{proxy.api_key_file} (GET {looks[0]} answered 401)")
    elif answer.status_code == 401:
        found.warnings.append(f"{table}: the backend wants an API key (GET {looks[0]} answered "
                              "401), so its model list cannot be kept for while it sleeps: give "
                              "the proxy the key (install.sh proxy ... --api-key-file FILE)")


# flags whose value is a file the server reads at start (llama-server, whisper-server, llama-swap)
INPUT_FILE_FLAGS = {"-m", "--model", "-mm", "--mmproj", "-md", "--model-draft", "--lora",
                    "--control-vector", "--grammar-file", "--json-schema-file",
                    "--chat-template-file", "--config", "--models-dir", "--api-key-file"}


def named_inputs(command: tuple[str, ...]) -> list[tuple[str, str]]:
    """(flag, path) of each file or folder a server command reads at start (a model, a config)."""
    return [(flag, value) for flag, value in itertools.pairwise(command)
            if (flag in INPUT_FILE_FLAGS or (flag.startswith("--") and value.endswith(".gguf")))
            and "://" not in value]


def missing_inputs(command: tuple[str, ...]) -> list[str]:
    """Files a server command names as its inputs that do not exist."""
    return [f"{flag} {value}" for flag, value in named_inputs(command)
            if not os.path.exists(value)]


def input_problems(server: ServerConfig) -> list[str]:
    """What would fail each start of the server: inputs that are not there, and a program or
    inputs that its user (not root) may not reach."""
    table = f"[server.{server.name}] command"
    problems = [f"{table}: {item}: no such file (the server would fail at each start)"
                for item in missing_inputs(server.command)]
    reached = [(server.command[0], "run")] if os.path.exists(server.command[0]) else []
    reached += [(value, "read") for _, value in named_inputs(server.command)
                if os.path.exists(value)]
    problems += [f"{table}: {shut.path}: the server runs as user {shut.user}, who may not "
                 f"{shut.action} it: {shut.fix()}"
                 for shut in server_user.shut_out(reached, server_user.server_user(server.name))]
    return problems


def check_paths(server: ServerConfig, found: Findings) -> None:
    found.errors += input_problems(server)


def check_reachable(server: ServerConfig, config: Config, found: Findings,
                    environment: dict[str, str] | None = None) -> None:
    """A server that listens on loopback only cannot be reached by a proxy on another host.
    Where it listens is its kind's to tell: from its command, or (Ollama) its unit's
    environment, as the unit has it."""
    kind = kinds.get(server.activity)
    if environment is None:
        environment = systemd.unit_environment(systemd.server_unit(server.name))
    host, port = kind.listen(server.command, environment)
    advice = kind.listen_everywhere(port)
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if advice and loopback and not config.proxies:  # a proxy on this same host would reach it
        found.warnings.append(
            f"[server.{server.name}] listens on {host} only: a proxy on the always-on host cannot "
            f"reach it; {advice}")


def check_activity(server: ServerConfig, servers_signal: bool, found: Findings) -> None:
    """What the idle check can see of this server's use, and what it cannot."""
    table = f"[server.{server.name}]"
    if not servers_signal:
        return
    kind = kinds.get(server.activity)
    advice = kind.advice(server.command)
    for line in advice:
        found.warnings.append(f"{table}: {line}")
    if kind.cannot_show:
        found.warnings.append(f"{table} activity = \"{server.activity}\": {kind.cannot_show}")
    if kind.shows and not advice:
        found.good.append(f"{table}: {kind.shows}")
    check_activity_read(server, found)


def check_activity_read(server: ServerConfig, found: Findings) -> None:
    """Read the server once, as the idle check does: an endpoint it cannot read would count as
    busy at every check, and the box would never sleep."""
    table = f"[server.{server.name}]"
    try:
        look = source_for(server, timeout=2.0, gentle=True).look()
    except Unreadable as error:
        found.errors.append(f"{table}: its activity cannot be read ({error}): every idle check "
                            "counts it busy, so the box never sleeps")
        return
    if look.running:
        found.good.append(f"{table}: activity read: {ready_status(look)}")


def check_gpus(mode: str, found: Findings) -> None:
    reading = AmdGpuSignal().read() if mode == "amdgpu" else GpuSignal(mode).read()
    if reading.activity is Activity.UNKNOWN:
        found.errors.append(f"[idle] gpu = \"{mode}\": {reading.reason}")
        return
    found.good.append(f"{'amdgpu' if mode == 'amdgpu' else 'nvidia-smi'}: {reading.reason}")
    if reading.hint:  # a GPU in P0 at 0 %: it may never read idle
        found.warnings.append(f"[idle] gpu = \"{mode}\": {reading.reason} {reading.hint}")


def check_nvidia_suspend(found: Findings) -> None:
    """The NVIDIA driver's suspend settings, where an NVIDIA driver runs (host/nvidia_power.py)."""
    try:
        params = nvidia_power.parse_params(nvidia_power.PARAMS.read_text())
        version = nvidia_power.VERSION.read_text()
    except OSError:
        return  # no NVIDIA driver loaded
    try:
        enabled = {unit: systemd.unit_file_state(unit) == "enabled" for unit in nvidia_power.UNITS}
    except Exception:
        enabled = {}
    path = params.get("TemporaryFilePath") or "/tmp"
    try:
        stat = os.statvfs(path)
        free = stat.f_bavail * stat.f_frsize
    except OSError:
        free = None
    used = None
    try:
        status, output = bounded_output(["nvidia-smi", "--query-gpu=memory.used",
                                         "--format=csv,noheader,nounits"], 15.0, 1 << 16)
        if status == 0:
            used = sum(int(line.strip()) for line in output.splitlines() if line.strip()) << 20
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    lines = nvidia_power.advice(params, version, enabled, free, used)
    found.warnings.extend(lines)
    if not lines:
        found.good.append("the NVIDIA driver is set up to keep the GPU across a suspend")


def network_cards(net: Path = Path("/sys/class/net")) -> dict[str, str]:
    """Each network card's MAC (loopback and cards without one left out)."""
    cards = {}
    for card in sorted(net.iterdir()) if net.is_dir() else []:
        try:
            mac = (card / "address").read_text().strip()
        except OSError:
            continue
        if card.name != "lo" and mac and mac != "00:00:00:00:00:00":
            cards[card.name] = mac
    return cards


def check_macs(found: Findings) -> None:
    """The MAC the proxy's table wants, from the box itself (a newcomer copies it from here)."""
    for card, mac in network_cards().items():
        found.good.append(f"{card} has MAC {mac} (the proxy's mac = \"{mac}\" if this card "
                          "wakes the box)")


def check_rtc(found: Findings, alarm: Path = Path("/sys/class/rtc/rtc0/wakealarm")) -> None:
    """[schedule] awake wakes the box through its RTC alarm (WakeSystem=yes)."""
    if not alarm.exists():
        found.warnings.append(f"this box has no RTC wake alarm ({alarm}: not supported here): "
                              "[schedule] awake keeps it up in its windows but cannot resume it "
                              "from suspend for them")


def check_sessions(found: Findings, list_sessions=systemd.list_sessions) -> None:
    """A session that keeps the box up for as long as it is open (a desktop that never says it
    is idle), named with what changes that (host/signals/sessions.py)."""
    try:
        sessions = list_sessions()
    except Exception:  # no logind here: the idle check says so itself
        return
    for session in sessions:
        if sessions_signal.a_person(session) and sessions_signal.never_says_idle(session):
            found.warnings.append(f"sessions: {sessions_signal.never_idle(session)}")


WEB_UNIT_DIR = Path("/etc/systemd/system/sleepyllama-web.service.d")


def readable_by_anyone(path: Path) -> bool:
    """Whether a user of no group of its own (the page's DynamicUser) may read a file: read
    for others on it, and search for others on every directory above it."""
    try:
        if not path.stat().st_mode & 0o004:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in path.resolve().parents)
    except OSError:
        return False


def check_mqtt(config: Config, found: Findings, drop_ins: Path = WEB_UNIT_DIR) -> None:
    """What the page needs to reach Home Assistant's broker, as its unit (a dynamic user) sees
    it: a password it can read, a CA it can read; and whether MQTT travels in clear."""
    mqtt = config.mqtt
    credential = any("LoadCredential=mqtt-password:" in conf.read_text(errors="replace")
                     for conf in drop_ins.glob("*.conf")) if drop_ins.is_dir() else False
    if mqtt.username and not credential:
        if not mqtt.password_file:
            found.warnings.append(f"[mqtt] username {mqtt.username}: no password for it (the "
                                  "credential mqtt-password: install.sh --mqtt-password-file)")
        elif not readable_by_anyone(Path(mqtt.password_file)):
            found.errors.append(f"[mqtt] password_file {mqtt.password_file}: the page (its unit's "
                                "dynamic user) cannot read it; it serves without Home Assistant. "
                                "Pass it as a credential: install.sh --mqtt-password-file FILE")
    if mqtt.ca_file and not readable_by_anyone(Path(mqtt.ca_file)):
        found.errors.append(f"[mqtt] ca_file {mqtt.ca_file}: missing, or the page (its unit's "
                            "dynamic user) cannot read it (a certificate is no secret: 0644)")
    found.good.append(f"Home Assistant through the MQTT broker {mqtt.broker}" + (
        ", over TLS" if mqtt.tls or mqtt.ca_file else
        ": in clear, user name, password, states and presses (TLS: [mqtt] ca_file)"))


def check_sleep_action(action: str, found: Findings) -> None:
    """Whether logind would do what the sleep sequence asks of it (host/sleep_support.py)."""
    support = sleep_advice(action, systemd.can_sleep)[1]
    found.errors += support.errors
    found.warnings += support.warnings
    found.good += support.good


def check_wake_on_lan(config: Config, found: Findings) -> None:
    """What the sleep sequence asks before each suspend (host/wake_on_lan.py)."""
    if config.idle.woken_by == "other":
        found.good.append("[idle] woken_by = \"other\": Wake-on-LAN is not asked")
        return
    reading = wake_on_lan.reading(config.notify.proxies)
    if reading.activity is Activity.IDLE:
        found.good.append(reading.reason)
    else:
        found.errors.append(f"{reading.reason}: the box will not suspend, since no magic packet "
                            "could wake it (enable Wake-on-LAN in the BIOS/UEFI, use another card, "
                            "or set [idle] woken_by = \"other\" if a plug, IPMI or a timer wakes it)")


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
                   else f"restarting again and again ({count(row['restarts'], 'restarts')})")
            why = row["status"] or " | ".join(systemd.journal_errors(row["unit"])) or (
                f"journalctl -u {row['unit']}")
            found.errors.append(f"{row['unit']} {how}: {why}; {RESTART_HINT}")
    for server in config.servers.values():
        unit = f"sleepyllama-server@{server.name}.service"
        row = next((row for row in rows if row["unit"] == unit and row["active"] == "active"),
                   None)
        if row is not None:
            ready, _alive, why = health(server.health_url)
            if not ready:
                found.warnings.append(f"{unit} runs but {server.health_url} says: {why}")
            elif row["status"].startswith(("ready on the CPU", "ready with")):
                # host/placement.py: its own output said where its model went
                found.errors.append(f"{unit} is {row['status'].split(' · ')[0]}: {placement.FIX}")


def print_findings(found: Findings) -> None:
    for line in found.errors:
        print(f"error: {line}")
    for line in found.warnings:
        print(f"warning: {line}")
    for line in found.good:
        print(f"ok: {line}")
    print(f"{len(found.errors)} error(s), {len(found.warnings)} warning(s)")
