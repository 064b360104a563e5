"""The one place that talks to systemd: socket activation, sd_notify, and (through pystemd) D-Bus."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import sdnotify

from sleepyllama import sleep_actions

STORED_PREFIX = "sl-"  # FDNAME= of what a program put in its unit's fd store (FDSTORE=1)


def inherited_fds() -> tuple[list[socket.socket], dict[str, int]]:
    """What systemd passed (LISTEN_FDS, from fd 3): the socket unit's listening sockets, and the
    fds this service stored before its last exit (named STORED_PREFIX..., FDSTORE=1), by name.

    The environment is unset so that child processes (wake_command) do not think they own them.
    """
    import pystemd.daemon  # here alone: importing it loads pystemd's D-Bus modules too

    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    count = pystemd.daemon.listen_fds(1)
    first = pystemd.daemon.LISTEN_FDS_START
    listeners: list[socket.socket] = []
    stored: dict[str, int] = {}
    for index, fd in enumerate(range(first, first + max(count, 0))):
        name = names[index] if index < len(names) else ""
        if name.startswith(STORED_PREFIX):
            stored[name] = fd
        else:
            listeners.append(socket.socket(fileno=fd))
    return listeners, stored


class Notifier:
    """sd_notify through sdnotify; sends STATUS= only when it changes, so callers need not track it."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier()
        self._status = ""

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))
        self._status = status or self._status

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._send(f"STATUS={status}")

    def stopping(self, status: str = "") -> None:
        self._send("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def store_fds(self, named: Iterable[tuple[str, int]]) -> int:
        """Hand fds to the unit's fd store (FileDescriptorStoreMax=), each to come back under
        its name at the next start; how many went (0 with no service manager to take them)."""
        address = os.environ.get("NOTIFY_SOCKET", "")
        if not address:
            return 0
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        sent = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.connect(address)
                for name, fd in named:
                    socket.send_fds(sock, [f"FDSTORE=1\nFDNAME={name}".encode()], [fd])
                    sent += 1
            except OSError:
                pass  # what went, went; the caller closes the rest
        return sent

    def forget_stored(self, names: Iterable[str]) -> None:
        """Take fds out of the store once they are back: the store's copy would keep a
        connection open after this program closes it."""
        for name in names:
            self._send(f"FDSTOREREMOVE=1\nFDNAME={name}")

    def _send(self, message: str) -> None:
        if self.enabled:
            # sdnotify encodes with latin-1, but systemd reads UTF-8 ("·" would arrive as 0xb7):
            # hand it the UTF-8 bytes spelled as latin-1 characters, which encode back unchanged
            self._notifier.notify(message.encode("utf-8").decode("latin-1"))


# -- units and logind, through pystemd (D-Bus); imported lazily so the proxy never loads them ----

SERVERS_TARGET = "sleepyllama-servers.target"
SERVER_UNITS = "sleepyllama-server@*.service"


def server_unit(name: str) -> str:
    return f"sleepyllama-server@{name}.service"
_GONE = ("inactive", "failed")


def state_directory() -> Path | None:
    """The unit's StateDirectory= (systemd passes it in STATE_DIRECTORY); None outside one."""
    directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) if directory else None


@overload
def credential_or(name: str, fallback: Path) -> Path: ...
@overload
def credential_or(name: str, fallback: None) -> Path | None: ...
def credential_or(name: str, fallback: Path | None) -> Path | None:
    """A unit's credential NAME (LoadCredential=, in CREDENTIALS_DIRECTORY) where systemd gave
    one, else `fallback`: the file a command run by hand reads."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / name).exists():
        return Path(directory) / name
    return fallback


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _logind():  # pystemd's SDObject
    from pystemd.base import SDObject

    logind = SDObject(destination=b"org.freedesktop.login1", path=b"/org/freedesktop/login1")
    logind.load()
    return logind


def list_inhibitors() -> list[tuple[str, str, str, str, int, int]]:
    """logind's inhibitors as (what, who, why, mode, uid, pid)."""
    return [(what.decode(), who.decode(), why.decode(), mode.decode(), uid, pid)
            for what, who, why, mode, uid, pid in _logind().Manager.ListInhibitors()]


@dataclass(frozen=True)
class Session:
    """What logind says of one session (org.freedesktop.login1.Session)."""

    id: str
    user: str
    type: str  # "tty", "x11", "wayland", "unspecified", ...
    klass: str  # Class: "user", "greeter", "lock-screen", "background", ...
    state: str  # "active", "online", "closing", "opening"
    tty: str = ""
    remote_host: str = ""
    service: str = ""  # the PAM service: "sshd", "login", "gdm-password", ...
    idle_hint: bool = False
    idle_since: float = 0.0  # CLOCK_REALTIME seconds of the last input; 0: logind cannot say


def list_sessions() -> list[Session]:
    """logind's sessions, each with its last input; one that ends while it is read is left out."""
    from pystemd.base import SDObject
    from pystemd.dbusexc import DBusBaseError

    sessions = []
    for session_id, _uid, user, _seat, path in _logind().Manager.ListSessions():
        try:
            unit = SDObject(destination=b"org.freedesktop.login1", path=path)
            unit.load()
            read = unit.Session
            sessions.append(Session(
                id=session_id.decode(), user=user.decode(), type=read.Type.decode(),
                klass=read.Class.decode(), state=read.State.decode(), tty=read.TTY.decode(),
                remote_host=read.RemoteHost.decode(), service=read.Service.decode(),
                idle_hint=bool(read.IdleHint), idle_since=int(read.IdleSinceHint) / 1e6))
        except DBusBaseError:
            continue  # logged out between the list and the read
    return sessions


def sleep(action: str) -> None:
    """Ask logind to suspend, hibernate, suspend then hibernate, or power off ([idle] action,
    sleep_actions.py); it returns at once, and systemd-sleep's hooks run around all but a
    power-off."""
    getattr(_logind().Manager, sleep_actions.get(action).logind)(False)


def can_sleep(action: str) -> str:
    """logind's answer to Can<Action>: "yes", "no", "challenge" (only with authorization),
    "na" (this machine cannot: no swap or resume device for hibernation, a container)."""
    answer = getattr(_logind().Manager, "Can" + sleep_actions.get(action).logind)()
    return answer.decode() if isinstance(answer, bytes) else str(answer)


def dbus_words(error: BaseException) -> str:
    """What a D-Bus error says, in words: pystemd keeps the bus's message as bytes (b'...'),
    and its base error adds a line of its own for the developer."""
    message = getattr(error, "err_message", None)
    if message is None:
        return str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    name = getattr(error, "err_name", "") or ""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    words = str(message).strip() or str(name) or type(error).__name__
    return f"{words} ({name})" if name and str(message).strip() else words


def reboot() -> None:
    """Ask logind to reboot (sleepyllama-gpu-check, opted in with [resume] gpu_failure)."""
    _logind().Manager.Reboot(False)


def units(pattern: str) -> list[tuple[str, str]]:
    """(name, ActiveState) of the loaded units matching a glob."""
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        listed = manager.Manager.ListUnitsByPatterns([], [pattern.encode()])
    return [(unit[0].decode(), unit[3].decode()) for unit in listed]


def running_servers() -> list[str]:
    return [name for name, state in units(SERVER_UNITS) if state not in _GONE]


def stop_servers(timeout: float) -> list[str]:
    """Stop sleepyllama-servers.target and every server unit, and wait until they are gone.

    Returns the units still not stopped after `timeout` (empty when all stopped)."""
    from pystemd.systemd1 import Manager

    running = running_servers()
    with Manager() as manager:
        manager.Manager.StopUnit(SERVERS_TARGET.encode(), b"replace")
        for name in running:  # also those started by hand, outside the target
            manager.Manager.StopUnit(name.encode(), b"replace")
    deadline = time.monotonic() + timeout
    while (left := running_servers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def start_servers() -> None:
    """Queue the start of sleepyllama-servers.target and return at once (never blocks a resume)."""
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        manager.Manager.StartUnit(SERVERS_TARGET.encode(), b"replace")


@dataclass(frozen=True)
class UnitState:
    name: str
    active: str  # ActiveState: active, failed, activating, ...; "not-found" when unknown
    sub: str  # SubState: running, auto-restart, dead, ...
    result: str  # Result of a service: success, exit-code, start-limit-hit, ...
    status: str  # STATUS=; kept for a failed unit (its error), dropped for a stopped one
    restarts: int  # NRestarts of a service
    started: float | None = None  # when it last became active (CLOCK_REALTIME), if it did


def unit_details(name: str) -> UnitState:
    from pystemd.systemd1 import Unit

    with Unit(name.encode()) as unit:
        load = unit.Unit.LoadState.decode()
        active, sub = unit.Unit.ActiveState.decode(), unit.Unit.SubState.decode()
        service = name.endswith(".service") and load != "not-found"
        result = unit.Service.Result.decode() if service else ""
        status = unit.Service.StatusText.decode() if service else ""
        restarts = int(unit.Service.NRestarts) if service else 0
        entered = int(unit.Unit.ActiveEnterTimestamp)  # µs; 0 if it never became active
    return UnitState(name, "not-found" if load == "not-found" else active, sub, result,
                     "" if active == "inactive" else status, restarts,
                     entered / 1e6 if entered else None)


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    """systemctl itself, for what is not asked over D-Bus here (daemon-reload, enable, a unit's
    properties as loaded, drop-ins included); never raises: its exit status is the answer."""
    try:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(["systemctl", *args], 1, "", str(error))


def show(unit: str, *properties: str) -> dict[str, str]:
    """These properties of a unit as systemd has it loaded ({} without systemd)."""
    shown = systemctl("show", *(f"--property={name}" for name in properties), unit).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def unit_environment(name: str) -> dict[str, str]:
    """Environment= of a unit as systemd has loaded it, drop-ins included ({} without one)."""
    try:
        words = shlex.split(show(name, "Environment").get("Environment", ""))
    except ValueError:
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word)


def run_transient(unit: str, description: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    """A command as a transient service of its own (systemd-run), gone when it ends."""
    try:
        return subprocess.run(["systemd-run", f"--unit={unit}", "--collect", "--quiet",
                               f"--description={description}", "--", *command],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess(["systemd-run"], 1, "", str(error))


def reset_failed(name: str) -> None:
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        manager.Manager.ResetFailedUnit(name.encode())


def restart(name: str, *, only_if_running: bool = False) -> None:
    """Queue a restart (or a start) of a unit and return at once."""
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        if only_if_running:
            manager.Manager.TryRestartUnit(name.encode(), b"replace")
        else:
            manager.Manager.RestartUnit(name.encode(), b"replace")


def reload(name: str) -> None:
    """Reload a running unit (its ExecReload=), or restart one that cannot; nothing if stopped."""
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        manager.Manager.ReloadOrTryRestartUnit(name.encode(), b"replace")


def journal_errors(unit: str, lines: int = 3) -> list[str]:
    """The unit's last error lines in the journal (none when we may not read it)."""
    try:
        result = subprocess.run(["journalctl", "--no-pager", "-o", "cat", "-p", "err", "-n",
                                 str(lines), "-u", unit], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in result.stdout.splitlines() if line.strip()]


def unit_file_state(name: str) -> str:
    """"enabled", "disabled", "static", ... for an installed unit file; "not-found" otherwise."""
    from pystemd.dbusexc import DBusBaseError
    from pystemd.systemd1 import Manager

    with Manager() as manager:
        try:
            return manager.Manager.GetUnitFileState(name.encode()).decode()
        except DBusBaseError:
            return "not-found"
