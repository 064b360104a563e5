"""Load and validate /etc/sleepyllama/sleepyllama.toml.

Every error is a ConfigError whose message names the file, the table and the key, in one line,
so that a unit failing with exit status 78 says in the journal exactly what to fix.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sleepyllama import files, kinds, sleep_actions
from sleepyllama.compat import tomllib
from sleepyllama.windows import Window, parse_window
from sleepyllama.words import format_duration

DEFAULT_PATH = Path("/etc/sleepyllama/sleepyllama.toml")
EX_CONFIG = 78  # sysexits.h: the unit's RestartPreventExitStatus= matches it


T = TypeVar("T")


class ConfigError(Exception):
    """A problem with the configuration; str(error) is the one line to show."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


DEFAULT_WAKE_TIMEOUT = 180.0  # seconds a client is held: a box that resumes (see sleep_actions)


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




def process_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name and "/" not in name
                                              for name in value):
        raise ValueError(f"expected a list of program names like [\"make\", \"ffmpeg\"], not {value!r}")
    return tuple(value)


def port_list(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of ports like [22, 445], not {value!r}")
    return tuple(parse_port(port) for port in value)


def watts(value: object) -> float:
    if not files.finite(value) or value < 0:  # type: ignore[operator]
        raise ValueError(f"expected a number, 0 or more, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def host_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of host names like [\"llm.home.arpa\"], not {value!r}")
    names = []
    for name in value:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", name):
            raise ValueError(f"expected a host name or address (no port, no scheme), not {name!r}")
        names.append(name.lower().rstrip("."))
    return tuple(names)


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, not {value!r}")
    return value


def printable(value: object) -> str:
    if not isinstance(value, str) or not value.isprintable() or len(value) > 256:
        raise ValueError(f"expected printable text, not {value!r}")
    return value


def topic_level(value: object) -> str:
    # a topic level of letters, digits, _ and -: no wildcard, no separator, no NUL
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError(f"expected a topic level of letters, digits, _ and -, not {value!r}")
    return value


def textfile_directory(value: object) -> str:
    if value in ("", "off"):
        return str(value)
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValueError(f"expected an absolute directory (node_exporter's "
                         f"--collector.textfile.directory), \"\" or \"off\", not {value!r}")
    return value


def parse_windows(value: object) -> tuple[Window, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list like [\"Mon..Fri 08:30..18:00\"], not {value!r}")
    return tuple(parse_window(item) for item in value)


def addresses(value: object) -> tuple[Address, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list like [\"192.168.1.2:3939\"], not {value!r}")
    return tuple(parse_address(item) for item in value)


look_requests = partial(parse_requests, patterns=False)  # "GET /path", exact
wake_requests = partial(parse_requests, patterns=True)  # "METHOD /glob*"


def setting(default: Any = MISSING, parse: Callable[[object], Any] | None = None, *,
            required: bool = False) -> Any:
    """One key of a table, written once: its default and its parser, on the record's field. The
    loader reads every key of a record through its setting (_Table.read), and
    docs/configuration.md names each one (tests/test_docs.py)."""
    return field(default=default, metadata={"parse": parse, "required": required})


# ---------------------------------------------------------------------------------------------
# Records: one field a key, its default and its parser on it


@dataclass(frozen=True)
class ProxyConfig:
    name: str
    backend: Address = setting(parse=parse_address, required=True)  # noqa: RUF009 (a field())
    mac: str | None = setting(None, parse_mac)  # required unless wake_command
    # None: the kind's own ready check; "": a TCP connect is enough
    health_url: str | None = setting(None, parse_url)
    # "auto": any kind's ready answer; its look-only requests (kinds/)
    kind: str = setting("auto", one_of("auto", *kinds.NAMES))
    broadcast: str = setting("255.255.255.255", parse_ip)
    wol_port: int = setting(9, parse_port)
    wol_source: str | None = setting(None, parse_ip)
    wol_interval: float = setting(3.0, at_least(MIN_WOL_INTERVAL))
    wake_timeout: float = setting(DEFAULT_WAKE_TIMEOUT, at_least(1.0))
    wake_command: tuple[str, ...] | None = setting(None, parse_argv)
    max_connections: int = setting(512, positive_int)
    exit_idle: float | None = setting(None, parse_duration)
    # while the backend is not known to be ready: requests answered from the cache ("GET /path"),
    # requests that may wake it ("METHOD /glob*"; None: all), clients that may wake it (None: all)
    answer_while_asleep: tuple[str, ...] | None = setting(None, look_requests)  # None: the kind's
    wake_on: tuple[str, ...] | None = setting(None, wake_requests)
    wake_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = setting(
        None, parse_networks)
    # the backend's API key (llama-server --api-key): sent with the cache's fetches, and a cached
    # answer goes only to a client that presents it; under systemd read as the credential api-key
    api_key_file: str | None = setting(None, absolute_path)
    # a streamed chat completion that must wait for a wake is answered at once, with the wake's
    # progress as reasoning in the stream, then the backend's own answer (proxy/progress.py)
    wake_progress: bool = setting(False, boolean)
    # requests answered from the cache that also start a wake in the background ("GET /path"):
    # opening the chat UI wakes the box while the user types
    prewake_on: tuple[str, ...] = setting((), look_requests)
    # "learned": wake the box ahead of the times its use begins, as its ledger teaches
    # (learned.py); "off": never on its own (it spends energy)
    prewake: str = setting("off", one_of("off", "learned"))
    # windows in which a learned pre-wake never wakes it
    prewake_never: tuple[Window, ...] = setting((), parse_windows)

    def __post_init__(self) -> None:
        if self.answer_while_asleep is None:  # the kind knows its own; written once, there
            object.__setattr__(self, "answer_while_asleep", kinds.look_only(self.kind))


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: tuple[str, ...] = setting(parse=parse_argv, required=True)
    # "": the kind's ready check where the command says it listens
    health_url: str = setting("", parse_url)
    stop_timeout: float = setting(30.0, parse_duration)
    pstate: str = setting("off", one_of("off", "auto"))  # "auto": idle GPUs to P8 (nvidia-pstate)
    # the kind of server (kinds/); "auto": from the command's program
    activity: str = setting("auto", one_of("auto", *kinds.NAMES))

    def __post_init__(self) -> None:
        if self.activity == "auto":
            object.__setattr__(self, "activity", kinds.detect(self.command).name)
        if not self.health_url:
            object.__setattr__(self, "health_url",
                               kinds.get(self.activity).health_url(self.command))


@dataclass(frozen=True)
class IdleConfig:
    timeout: float = setting(3600.0, parse_duration)
    # "pstate", "utilization" (nvidia-smi), "amdgpu" (sysfs) or "off"
    gpu: str = setting("pstate", one_of("pstate", "utilization", "amdgpu", "off"))
    # a program on the GPU that is not one of the servers is busy
    gpu_processes: bool = setting(True, boolean)
    servers: bool = setting(True, boolean)
    sessions: bool = setting(True, boolean)  # a person's input (SSH, console, desktop) since the last check
    inhibitors: bool = setting(True, boolean)
    processes: tuple[str, ...] = setting((), process_names)  # programs that keep the box up while they run
    ports: tuple[int, ...] = setting((), port_list)  # local ports whose established connections keep it up
    load: float | None = setting(None, watts)  # the 5-minute load average above which it stays up
    # "lan": a magic packet wakes the box, so Wake-on-LAN is armed before each suspend and a box
    # whose card cannot be woken stays up; "other": something else wakes it (a plug, IPMI, RTC)
    woken_by: str = setting("lan", one_of("lan", "other"))
    # how the box sleeps (sleep_actions.py): "suspend", "hibernate", "suspend-then-hibernate" or
    # "poweroff", each through logind
    action: str = setting(sleep_actions.DEFAULT, one_of(*sleep_actions.ACTIONS))


@dataclass(frozen=True)
class ResumeConfig:
    # "auto": after a resume and at boot, before the servers start, check that CUDA initializes
    # (where libcuda.so.1 exists) and heal it by reloading nvidia_uvm; "off": never
    gpu_check: str = setting("auto", one_of("auto", "off"))
    # still failing after the reload: "report" (the servers start, on the CPU, and say so), or
    # "reboot" (one reboot, never two within REBOOT_SPACING)
    gpu_failure: str = setting("report", one_of("report", "reboot"))


@dataclass(frozen=True)
class EnergyConfig:
    # the rest of the machine while awake and idle; None: GPUs only
    base_watts: float | None = setting(None, watts)
    asleep_watts: float = setting(2.0, watts)  # the whole machine suspended
    # the whole machine hibernated or powered off (standby power)
    off_watts: float = setting(0.5, watts)
    price_per_kwh: float | None = setting(None, watts)
    currency: str = setting("", text)


@dataclass(frozen=True)
class NotifyConfig:
    # the proxies (their listen address, HOST:PORT) told when a server is ready and right before
    # the box suspends (hints.py)
    proxies: tuple[Address, ...] = setting((), addresses)


@dataclass(frozen=True)
class MqttConfig:
    # the MQTT broker Home Assistant uses, "HOST:PORT"; None: no MQTT
    broker: Address | None = setting(None, parse_address)  # noqa: RUF009 (a field())
    username: str = setting("", printable)
    # the password: the systemd credential mqtt-password, else this file (run by hand)
    password_file: str = setting("", printable)
    discovery_prefix: str = setting("homeassistant", topic_level)  # Home Assistant's default
    topic: str = setting("sleepyllama", topic_level)  # states, commands and availability go under this
    # TLS to the broker (its port is usually 8883): without it the user name, the password,
    # the states and the presses travel in clear
    tls: bool = setting(False, boolean)
    # the CA that signed the broker's certificate (a home CA, mosquitto's own); "": the
    # system's CAs. Setting it turns TLS on
    ca_file: str = setting("", absolute_path)


@dataclass(frozen=True)
class SteerConfig:
    # the GPU box's UDP port for the always-on host's signed commands (steer.py); its socket
    # unit listens on 3941: another port needs the same in a drop-in of sleepyllama-steer.socket
    port: int = setting(3941, parse_port)


@dataclass(frozen=True)
class WebConfig:
    # the names the page is reached by besides this host's own (its host name, NAME.local,
    # localhost, the address a browser connected to): a reverse proxy's, a DNS name of yours.
    # Any other Host is refused, so that a site whose name is made to point here (DNS
    # rebinding) cannot press a button or read a box's clients
    names: tuple[str, ...] = setting((), host_names)
    # on the GPU box: the browsers that may press its own Stay awake and Sleep now; None: all
    # (a proxy's box is steered from the browsers its wake_from allows)
    steer_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = setting(
        None, parse_networks)


@dataclass(frozen=True)
class MetricsConfig:
    # where each idle check writes sleepyllama.prom for node_exporter's textfile collector:
    # "" for the idle unit's own StateDirectory (/var/lib/sleepyllama), "off" for nowhere
    textfile_dir: str = setting("", textfile_directory)


@dataclass(frozen=True)
class ScheduleConfig:
    awake: tuple[Window, ...] = setting((), parse_windows)  # windows the box stays up in


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

    def read(self, record: type[T], **given: Any) -> T:
        """The record from the table: each key through its setting (its parser, its default),
        what is not a key given; then any key of the table it does not know is an error."""
        values = {setting.name: self.get(setting.name, setting.metadata["parse"],
                                         required=setting.metadata["required"])
                  for setting in fields(record) if setting.metadata.get("parse")}  # type: ignore[arg-type]
        self.finish()
        return record(**given, **values)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                known = ", ".join(sorted(self.used))
                raise self.error(key, f"unknown key (known keys: {known})")


def _proxy(path: Path, name: str, data: object) -> ProxyConfig:
    table = _Table(path, f"proxy.{name}", data, ProxyConfig)
    config = table.read(ProxyConfig, name=name)
    if config.mac is None and config.wake_command is None:
        raise table.error("mac", "is required")
    if config.prewake == "learned" and config.exit_idle is not None:
        raise table.error("prewake", "a learned pre-wake needs a proxy that runs: it cannot "
                          "come from one that exit_idle let exit (remove exit_idle)")
    return config


def _server(path: Path, name: str, data: object) -> ServerConfig:
    table = _Table(path, f"server.{name}", data, ServerConfig)
    config = table.read(ServerConfig, name=name)
    if not config.health_url:
        raise table.error("health_url", "a server needs a health URL to know when it is ready")
    return config


def _table(record: type[T], name: str) -> Callable[[Path, object], T]:
    """The loader of a table that is its record's keys and nothing more."""
    def load(path: Path, data: object) -> T:
        return _Table(path, name, data, record).read(record)
    return load


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
        idle=_table(IdleConfig, "idle")(path, data.get("idle", {})),
        energy=_table(EnergyConfig, "energy")(path, data.get("energy", {})),
        schedule=_table(ScheduleConfig, "schedule")(path, data.get("schedule", {})).awake,
        notify=_table(NotifyConfig, "notify")(path, data.get("notify", {})),
        resume=_table(ResumeConfig, "resume")(path, data.get("resume", {})),
        metrics=_table(MetricsConfig, "metrics")(path, data.get("metrics", {})),
        mqtt=_table(MqttConfig, "mqtt")(path, data.get("mqtt", {})),
        steer=_table(SteerConfig, "steer")(path, data.get("steer", {})),
        web=_table(WebConfig, "web")(path, data.get("web", {})),
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
