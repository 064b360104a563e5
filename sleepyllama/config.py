"""Load and validate /etc/sleepyllama/sleepyllama.toml.

Every error is a ConfigError whose message names the file, the table and the key, in one line,
so that a unit failing with exit status 78 says in the journal exactly what to fix.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sleepyllama import files, kinds, sleep_actions
from sleepyllama.compat import tomllib
from sleepyllama.windows import Window, parse_window
from sleepyllama.words import format_duration

DEFAULT_PATH = Path("/etc/sleepyllama/sleepyllama.toml")
EX_CONFIG = 78  # sysexits.h: the unit's RestartPreventExitStatus= matches it


class ConfigError(Exception):
    """A problem with the configuration; str(error) is the one line to show."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


DEFAULT_WAKE_TIMEOUT = 180.0  # seconds a client is held: a box that resumes (see sleep_actions)


@dataclass(frozen=True)
class ProxyConfig:
    name: str
    backend: Address
    mac: str | None
    health_url: str | None = None  # None: the kind's own ready check; "": a TCP connect is enough
    kind: str = "auto"  # "auto": any kind's ready answer; its look-only requests (kinds/)
    broadcast: str = "255.255.255.255"
    wol_port: int = 9
    wol_source: str | None = None
    wol_interval: float = 3.0
    wake_timeout: float = DEFAULT_WAKE_TIMEOUT
    wake_command: tuple[str, ...] | None = None
    max_connections: int = 512
    exit_idle: float | None = None
    # while the backend is not known to be ready: requests answered from the cache ("GET /path"),
    # requests that may wake it ("METHOD /glob*"; None: all), clients that may wake it (None: all)
    answer_while_asleep: tuple[str, ...] | None = None  # None: the kind's look-only requests
    wake_on: tuple[str, ...] | None = None
    wake_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    # the backend's API key (llama-server --api-key): sent with the cache's fetches, and a cached
    # answer goes only to a client that presents it; under systemd read as the credential api-key
    api_key_file: str | None = None
    # a streamed chat completion that must wait for a wake is answered at once, with the wake's
    # progress as reasoning in the stream, then the backend's own answer (proxy/progress.py)
    wake_progress: bool = False
    # requests answered from the cache that also start a wake in the background ("GET /path"):
    # opening the chat UI wakes the box while the user types
    prewake_on: tuple[str, ...] = ()
    # "learned": wake the box ahead of the times its use begins, as its ledger teaches
    # (learned.py); "off": never on its own (it spends energy)
    prewake: str = "off"
    prewake_never: tuple[Window, ...] = ()  # windows in which a learned pre-wake never wakes it

    def __post_init__(self) -> None:
        if self.answer_while_asleep is None:  # the kind knows its own; written once, there
            object.__setattr__(self, "answer_while_asleep", kinds.look_only(self.kind))


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: tuple[str, ...]
    health_url: str = ""  # "": the kind's ready check where the command says it listens
    stop_timeout: float = 30.0
    pstate: str = "off"  # "auto": idle GPUs to P8 through nvidia-pstate
    activity: str = "auto"  # the kind of server (kinds/); "auto": from the command's program

    def __post_init__(self) -> None:
        if self.activity == "auto":
            object.__setattr__(self, "activity", kinds.detect(self.command).name)
        if not self.health_url:
            object.__setattr__(self, "health_url",
                               kinds.get(self.activity).health_url(self.command))


@dataclass(frozen=True)
class IdleConfig:
    timeout: float = 3600.0
    gpu: str = "pstate"  # "pstate", "utilization" (nvidia-smi), "amdgpu" (sysfs) or "off"
    gpu_processes: bool = True  # a program on the GPU that is not one of the servers is busy
    servers: bool = True
    sessions: bool = True  # a person's input (SSH, console, desktop) since the last check
    inhibitors: bool = True
    processes: tuple[str, ...] = ()  # programs that keep the box up while they run
    ports: tuple[int, ...] = ()  # local ports whose established connections keep it up
    load: float | None = None  # the 5-minute load average above which it stays up
    # "lan": a magic packet wakes the box, so Wake-on-LAN is armed before each suspend and a box
    # whose card cannot be woken stays up; "other": something else wakes it (a plug, IPMI, RTC)
    woken_by: str = "lan"
    # how the box sleeps (sleep_actions.py): "suspend", "hibernate", "suspend-then-hibernate" or
    # "poweroff", each through logind
    action: str = sleep_actions.DEFAULT


@dataclass(frozen=True)
class ResumeConfig:
    # "auto": after a resume and at boot, before the servers start, check that CUDA initializes
    # (where libcuda.so.1 exists) and heal it by reloading nvidia_uvm; "off": never
    gpu_check: str = "auto"
    # still failing after the reload: "report" (the servers start, on the CPU, and say so), or
    # "reboot" (one reboot, never two within REBOOT_SPACING)
    gpu_failure: str = "report"


@dataclass(frozen=True)
class EnergyConfig:
    base_watts: float | None = None  # the rest of the machine while awake and idle; None: GPUs only
    asleep_watts: float = 2.0  # the whole machine suspended
    off_watts: float = 0.5  # the whole machine hibernated or powered off (standby power)
    price_per_kwh: float | None = None
    currency: str = ""


@dataclass(frozen=True)
class NotifyConfig:
    # the proxies (their listen address, HOST:PORT) told when a server is ready and right before
    # the box suspends (hints.py)
    proxies: tuple[Address, ...] = ()


@dataclass(frozen=True)
class MqttConfig:
    # the MQTT broker Home Assistant uses, "HOST:PORT"; None: no MQTT
    broker: Address | None = None
    username: str = ""
    # the password: the systemd credential mqtt-password, else this file (run by hand)
    password_file: str = ""
    discovery_prefix: str = "homeassistant"  # Home Assistant's default
    topic: str = "sleepyllama"  # states, commands and availability go under this
    # TLS to the broker (its port is usually 8883): without it the user name, the password,
    # the states and the presses travel in clear
    tls: bool = False
    # the CA that signed the broker's certificate (a home CA, mosquitto's own); "": the
    # system's CAs. Setting it turns TLS on
    ca_file: str = ""


@dataclass(frozen=True)
class SteerConfig:
    # the GPU box's UDP port for the always-on host's signed commands (steer.py); its socket
    # unit listens on 3941: another port needs the same in a drop-in of sleepyllama-steer.socket
    port: int = 3941


@dataclass(frozen=True)
class WebConfig:
    # the names the page is reached by besides this host's own (its host name, NAME.local,
    # localhost, the address a browser connected to): a reverse proxy's, a DNS name of yours.
    # Any other Host is refused, so that a site whose name is made to point here (DNS
    # rebinding) cannot press a button or read a box's clients
    names: tuple[str, ...] = ()
    # on the GPU box: the browsers that may press its own Stay awake and Sleep now; None: all
    # (a proxy's box is steered from the browsers its wake_from allows)
    steer_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None


@dataclass(frozen=True)
class MetricsConfig:
    # where each idle check writes sleepyllama.prom for node_exporter's textfile collector:
    # "" for the idle unit's own StateDirectory (/var/lib/sleepyllama), "off" for nowhere
    textfile_dir: str = ""


@dataclass(frozen=True)
class Config:
    path: Path
    proxies: dict[str, ProxyConfig] = field(default_factory=dict)
    servers: dict[str, ServerConfig] = field(default_factory=dict)
    idle: IdleConfig = field(default_factory=IdleConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    schedule: tuple[Window, ...] = ()  # [schedule] awake: windows the box stays up in
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    steer: SteerConfig = field(default_factory=SteerConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def proxy(self, name: str) -> ProxyConfig:
        if name not in self.proxies:
            raise ConfigError(f"{self.path}: no [proxy.{name}] table{_known(self.proxies, 'proxy')}")
        return self.proxies[name]

    def pick_proxy(self, instance: str | None) -> ProxyConfig:
        """The [proxy.NAME] table asked for, or the only one."""
        if instance is not None:
            return self.proxy(instance)
        if len(self.proxies) == 1:
            return next(iter(self.proxies.values()))
        raise ConfigError(f"{self.path}: pass --instance NAME to pick one of "
                          + (", ".join(f"[proxy.{n}]" for n in sorted(self.proxies)) or
                             "the [proxy.NAME] tables (there are none)"))

    def server(self, name: str) -> ServerConfig:
        if name not in self.servers:
            raise ConfigError(
                f"{self.path}: no [server.{name}] table{_known(self.servers, 'server')}"
            )
        return self.servers[name]


def _known(tables: dict[str, Any], kind: str) -> str:
    if not tables:
        return ""
    return " (it has " + ", ".join(f"[{kind}.{name}]" for name in sorted(tables)) + ")"


# ---------------------------------------------------------------------------------------------
# Value parsers: each raises ValueError with a message that completes "KEY: ..."

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """Seconds from 90, 2.5, "90", "90s", "15m", "1h", "1h30m" or "500ms"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 90, \"90s\", \"15m\" or \"1h\", not {value!r}")
    plain_number = isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())
    if isinstance(value, int | float) or plain_number:
        seconds = float(value)
        if not math.isfinite(seconds):  # TOML allows nan and inf
            raise ValueError(f"expected a duration like 90, \"90s\", \"15m\" or \"1h\", "
                             f"not {value!r}")
    elif isinstance(value, str) and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", value.strip()):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit]
            for number, unit in _DURATION_PART.findall(value.strip())
        )
    else:
        raise ValueError(f"expected a duration like 90, \"90s\", \"15m\" or \"1h\", not {value!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


MIN_WOL_INTERVAL = 0.5  # faster wake signals flood the LAN and wake nothing sooner


def at_least(minimum: float):
    """A duration of at least `minimum` seconds."""
    def parse(value: object) -> float:
        seconds = parse_duration(value)
        if seconds < minimum:
            raise ValueError(f"must be at least {format_duration(minimum)}, not {value!r}")
        return seconds

    return parse


def parse_address(value: object) -> Address:
    """HOST:PORT, with IPv6 in brackets: "192.168.1.50:8080", "[::1]:8080", "box.lan:8080"."""
    if not isinstance(value, str):
        raise ValueError(f"expected \"HOST:PORT\", not {value!r}")
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^:\[\]\s]+):(\d+)", value.strip())
    if not match:
        raise ValueError(f"expected \"HOST:PORT\" (IPv6 as \"[::1]:8080\"), not {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if match.group(1):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"{host!r} in {value!r} is not an IPv6 address") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in {value!r} is out of range 1-65535")
    return Address(host, port)


def parse_mac(value: object) -> str:
    """A MAC as aa:bb:cc:dd:ee:ff (also accepts - or no separators), normalised to lower case."""
    if not isinstance(value, str):
        raise ValueError(f"expected a MAC address like \"ab:cd:ef:01:23:45\", not {value!r}")
    digits = re.sub(r"[:\-.]", "", value.strip())
    if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        raise ValueError(f"expected a MAC address like \"ab:cd:ef:01:23:45\", not {value!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()


def parse_ip(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address, not {value!r}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"expected an IP address, not {value!r}") from None


def parse_url(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an http:// URL or \"\", not {value!r}")
    if value == "":
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// URL or \"\", not {value!r}")
    return value


def parse_requests(value: object, *, patterns: bool) -> tuple[str, ...]:
    """A list of "METHOD /path" (with patterns: "/v1/*" globs and "*" for any method)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list like [\"GET /v1/models\"], not {value!r}")
    method = r"(?:[A-Z]+|\*)" if patterns else r"GET"
    path = r"/\S*" if patterns else r"/[^\s*?\[]*"
    for item in value:
        if not re.fullmatch(rf"{method} {path}", item):
            hint = "\"METHOD /path\", globs allowed" if patterns else "\"GET /path\", no globs"
            raise ValueError(f"{item!r} is not {hint}")
    return tuple(value)


def parse_networks(value: object) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDR networks ("192.168.1.0/24", "fd00::/8"); a bare address is a /32 or /128."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"expected a list like [\"192.168.1.0/24\"], not {value!r}")
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in value)
    except ValueError as error:
        raise ValueError(f"{error}") from None


def parse_argv(value: object) -> tuple[str, ...]:
    """A command as a list of strings; never a shell string, so nothing is ever word-split."""
    if isinstance(value, str):
        raise ValueError(
            f"must be a list of arguments, e.g. [\"/usr/bin/curl\", \"-s\", \"URL\"], not the "
            f"string {value!r}"
        )
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(arg, str) for arg in value)
        or not value[0]
    ):
        raise ValueError(f"must be a non-empty list of strings, not {value!r}")
    return tuple(value)


def absolute_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected an absolute path like \"/etc/sleepyllama/llama.key\", "
                         f"not {value!r}")
    return value


def parse_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"expected a port number 1-65535, not {value!r}")
    return value


def positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, not {value!r}")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {value!r}")
    return value


def one_of(*choices: str):
    def parse(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, not {value!r}")
        return str(value)

    return parse


# ---------------------------------------------------------------------------------------------
# Tables


class _Table:
    """Reads one TOML table; every key must be read, so unknown keys (typos) become errors."""

    def __init__(self, path: Path, name: str, data: object, record: type | None = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        self.path, self.name, self.data = path, name, data
        self.used: set[str] = set()
        # each default is the record's own field default, written once there
        self.defaults = {f.name: f.default for f in fields(record) if f.default is not MISSING
                         } if record is not None else {}

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{self.name}] {key}: {message}")

    def get(self, key: str, parse, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "is required")
            return self.defaults.get(key, default)
        try:
            return parse(self.data[key])
        except ValueError as error:
            raise self.error(key, str(error)) from None

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                known = ", ".join(sorted(self.used))
                raise self.error(key, f"unknown key (known keys: {known})")


def _proxy(path: Path, name: str, data: object) -> ProxyConfig:
    table = _Table(path, f"proxy.{name}", data, ProxyConfig)
    wake_command = table.get("wake_command", parse_argv)
    config = ProxyConfig(
        name=name,
        backend=table.get("backend", parse_address, required=True),
        mac=table.get("mac", parse_mac, required=wake_command is None),
        health_url=table.get("health_url", parse_url),
        kind=table.get("kind", one_of("auto", *kinds.NAMES)),
        broadcast=table.get("broadcast", parse_ip),
        wol_port=table.get("wol_port", parse_port),
        wol_source=table.get("wol_source", parse_ip),
        wol_interval=table.get("wol_interval", at_least(MIN_WOL_INTERVAL)),
        wake_timeout=table.get("wake_timeout", at_least(1.0)),
        wake_command=wake_command,
        max_connections=table.get("max_connections", positive_int),
        exit_idle=table.get("exit_idle", parse_duration),
        answer_while_asleep=table.get("answer_while_asleep",
                                      lambda v: parse_requests(v, patterns=False)),
        wake_on=table.get("wake_on", lambda v: parse_requests(v, patterns=True)),
        wake_from=table.get("wake_from", parse_networks),
        api_key_file=table.get("api_key_file", absolute_path),
        wake_progress=table.get("wake_progress", boolean),
        prewake_on=table.get("prewake_on", lambda v: parse_requests(v, patterns=False)),
        prewake=table.get("prewake", one_of("off", "learned")),
        prewake_never=table.get("prewake_never", parse_windows),
    )
    table.finish()
    if config.prewake == "learned" and config.exit_idle is not None:
        raise table.error("prewake", "a learned pre-wake needs a proxy that runs: it cannot "
                          "come from one that exit_idle let exit (remove exit_idle)")
    return config


def _server(path: Path, name: str, data: object) -> ServerConfig:
    table = _Table(path, f"server.{name}", data, ServerConfig)
    config = ServerConfig(
        name=name,
        command=table.get("command", parse_argv, required=True),
        health_url=table.get("health_url", parse_url),
        stop_timeout=table.get("stop_timeout", parse_duration),
        pstate=table.get("pstate", one_of("off", "auto")),
        activity=table.get("activity", one_of("auto", *kinds.NAMES)),
    )
    table.finish()
    if not config.health_url:
        raise table.error("health_url", "a server needs a health URL to know when it is ready")
    return config


def _idle(path: Path, data: object) -> IdleConfig:
    table = _Table(path, "idle", data, IdleConfig)
    config = IdleConfig(
        timeout=table.get("timeout", parse_duration),
        gpu=table.get("gpu", one_of("pstate", "utilization", "amdgpu", "off")),
        gpu_processes=table.get("gpu_processes", boolean),
        servers=table.get("servers", boolean),
        sessions=table.get("sessions", boolean),
        inhibitors=table.get("inhibitors", boolean),
        processes=table.get("processes", process_names),
        ports=table.get("ports", ports),
        load=table.get("load", watts),
        woken_by=table.get("woken_by", one_of("lan", "other")),
        action=table.get("action", one_of(*sleep_actions.ACTIONS)),
    )
    table.finish()
    return config


def process_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name and "/" not in name
                                              for name in value):
        raise ValueError(f"expected a list of program names like [\"make\", \"ffmpeg\"], not {value!r}")
    return tuple(value)


def ports(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of ports like [22, 445], not {value!r}")
    return tuple(parse_port(port) for port in value)


def _resume(path: Path, data: object) -> ResumeConfig:
    table = _Table(path, "resume", data, ResumeConfig)
    config = ResumeConfig(
        gpu_check=table.get("gpu_check", one_of("auto", "off")),
        gpu_failure=table.get("gpu_failure", one_of("report", "reboot")),
    )
    table.finish()
    return config


def watts(value: object) -> float:
    if not files.finite(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"expected a number, 0 or more, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def _metrics(path: Path, data: object) -> MetricsConfig:
    table = _Table(path, "metrics", data, MetricsConfig)

    def directory(value: object) -> str:
        if value in ("", "off"):
            return str(value)
        if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
            raise ValueError(f"expected an absolute directory (node_exporter's "
                             f"--collector.textfile.directory), \"\" or \"off\", not {value!r}")
        return value

    config = MetricsConfig(textfile_dir=table.get("textfile_dir", directory))
    table.finish()
    return config


def _mqtt(path: Path, data: object) -> MqttConfig:
    table = _Table(path, "mqtt", data, MqttConfig)

    def topic(value: object) -> str:
        # a topic level of letters, digits, _ and -: no wildcard, no separator, no NUL
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError(f"expected a topic level of letters, digits, _ and -, not {value!r}")
        return value

    def text(value: object) -> str:
        if not isinstance(value, str) or not value.isprintable() or len(value) > 256:
            raise ValueError(f"expected printable text, not {value!r}")
        return value

    config = MqttConfig(
        broker=table.get("broker", parse_address),
        username=table.get("username", text),
        password_file=table.get("password_file", text),
        discovery_prefix=table.get("discovery_prefix", topic),
        topic=table.get("topic", topic),
        tls=table.get("tls", boolean),
        ca_file=table.get("ca_file", absolute_path, ""),
    )
    table.finish()
    return config


def _steer(path: Path, data: object) -> SteerConfig:
    table = _Table(path, "steer", data, SteerConfig)
    config = SteerConfig(port=table.get("port", parse_port))
    table.finish()
    return config


def host_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of host names like [\"llm.home.arpa\"], not {value!r}")
    names = []
    for name in value:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", name):
            raise ValueError(f"expected a host name or address (no port, no scheme), not {name!r}")
        names.append(name.lower().rstrip("."))
    return tuple(names)


def _web(path: Path, data: object) -> WebConfig:
    table = _Table(path, "web", data, WebConfig)
    config = WebConfig(names=table.get("names", host_names),
                       steer_from=table.get("steer_from", parse_networks))
    table.finish()
    return config


def _energy(path: Path, data: object) -> EnergyConfig:
    table = _Table(path, "energy", data, EnergyConfig)
    currency = table.get("currency", lambda v: v if isinstance(v, str) else _not_text(v))
    config = EnergyConfig(
        base_watts=table.get("base_watts", watts),
        asleep_watts=table.get("asleep_watts", watts),
        off_watts=table.get("off_watts", watts),
        price_per_kwh=table.get("price_per_kwh", watts),
        currency=currency,
    )
    table.finish()
    return config


def _not_text(value: object) -> str:
    raise ValueError(f"expected text, not {value!r}")


def parse_windows(value: object) -> tuple[Window, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list like [\"Mon..Fri 08:30..18:00\"], not {value!r}")
    return tuple(parse_window(item) for item in value)


def _schedule(path: Path, data: object) -> tuple[Window, ...]:
    table = _Table(path, "schedule", data)
    awake = table.get("awake", parse_windows, ())
    table.finish()
    return awake


def _notify(path: Path, data: object) -> NotifyConfig:
    table = _Table(path, "notify", data, NotifyConfig)

    def addresses(value: object) -> tuple[Address, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list like [\"192.168.1.2:3939\"], not {value!r}")
        return tuple(parse_address(item) for item in value)

    config = NotifyConfig(proxies=table.get("proxies", addresses))
    table.finish()
    return config


def _named_tables(path: Path, kind: str, data: object) -> Iterator[tuple[str, object]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{kind}] must hold named tables like [{kind}.llama]")
    for name, table in data.items():
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
            raise ConfigError(
                f"{path}: [{kind}.{name}]: a name may hold only letters, digits and _ . : - "
                "(it becomes part of a systemd unit name)"
            )
        yield name, table


def parse(text: str, path: Path = DEFAULT_PATH) -> Config:
    return _config(path, _toml(text, path))


def _toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _config(path: Path, data: dict[str, Any]) -> Config:
    for key in data:
        if key not in ("proxy", "server", "idle", "energy", "schedule", "notify", "resume",
                       "metrics", "mqtt", "steer", "web"):
            raise ConfigError(f"{path}: [{key}]: unknown table (known: [proxy.NAME], "
                              "[server.NAME], [idle], [energy], [schedule], [notify], [resume], "
                              "[metrics], [mqtt], [steer], [web])")
    return Config(
        path=path,
        proxies={n: _proxy(path, n, t) for n, t in _named_tables(path, "proxy", data.get("proxy", {}))},
        servers={
            n: _server(path, n, t) for n, t in _named_tables(path, "server", data.get("server", {}))
        },
        idle=_idle(path, data.get("idle", {})),
        energy=_energy(path, data.get("energy", {})),
        schedule=_schedule(path, data.get("schedule", {})),
        notify=_notify(path, data.get("notify", {})),
        resume=_resume(path, data.get("resume", {})),
        metrics=_metrics(path, data.get("metrics", {})),
        mqtt=_mqtt(path, data.get("mqtt", {})),
        steer=_steer(path, data.get("steer", {})),
        web=_web(path, data.get("web", {})),
    )


def load(path: Path = DEFAULT_PATH) -> Config:
    return parse(_read(path), path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it, or pass --config PATH)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None


def load_proxy(path: Path, instance: str | None) -> tuple[ProxyConfig, str]:
    """One proxy's table, for the proxy itself, and the error of the rest of the file ("" when
    it is right). A typo in another proxy's table, or in the GPU box's, must not stop this one
    (it is for `check`); an error in its own table, or TOML that cannot be read, still does."""
    text = _read(path)
    try:
        return parse(text, path).pick_proxy(instance), ""
    except ConfigError as whole:
        data = _toml(text, path)
        proxies = data.get("proxy")
        names = list(proxies) if isinstance(proxies, dict) else []
        name = instance if instance is not None else (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise
        alone = _config(path, {"proxy": {name: proxies[name]}})  # its own error raises here
        return alone.proxy(name), str(whole)
