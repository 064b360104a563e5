"""What a unit of ours can read, as the unit would: its sandbox as systemd loaded it
(ProtectHome=, PrivateTmp=) and its user without the capabilities the unit does not give it.

`check` and the idle check's --dry-run run as root outside the units: a file they read fine may
be hidden from the unit (a key under /home, where sleepyllama-idle's ProtectHome=yes shows
nothing), and the unit would then count its server busy for ever. They ask here, so that an
"ok" is true for the units.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from sleepyllama import kinds, systemd
from sleepyllama.config import Config

IDLE_UNIT = "sleepyllama-idle.service"
HOMES = ("/home", "/root", "/run/user")  # what ProtectHome=yes and tmpfs hide
TEMPORARY = ("/tmp", "/var/tmp")  # what PrivateTmp=yes replaces with the unit's own


@dataclass(frozen=True)
class Sandbox:
    protect_home: str = "no"  # "no", "yes", "read-only", "tmpfs"
    private_tmp: bool = False
    user: str = "root"


# as units/sleepyllama-idle.service ships it: what a box gets before install.sh has run
SHIPPED = {IDLE_UNIT: Sandbox("yes", True, "root")}


def _under(path: str, places: Iterable[str]) -> str:
    """The place of `places` that holds `path`, or ""."""
    pure = PurePosixPath(os.path.normpath(path))
    return next((place for place in places
                 if pure == PurePosixPath(place) or PurePosixPath(place) in pure.parents), "")


def hidden(sandbox: Sandbox, path: str) -> str:
    """Why the unit's sandbox hides `path` from it; "" when it does not."""
    home = _under(path, HOMES)
    if home and sandbox.protect_home in ("yes", "tmpfs"):
        return f"its unit hides {home} (ProtectHome={sandbox.protect_home})"
    if _under(path, TEMPORARY) and sandbox.private_tmp:
        return "its unit has a /tmp of its own (PrivateTmp=yes)"
    return ""


def sandbox_of(unit: str) -> Sandbox:
    """The unit's sandbox as systemd has it loaded, drop-ins included; as shipped when it is
    not installed yet (check before install.sh)."""
    values = systemd.show(unit, "LoadState", "ProtectHome", "PrivateTmp", "User")
    if values.get("LoadState") != "loaded":
        return SHIPPED.get(unit, Sandbox())
    return Sandbox(values.get("ProtectHome", "no"), values.get("PrivateTmp") == "yes",
                   values.get("User") or "root")


def as_user(user: pwd.struct_passwd, argv: list[str]) -> bool:
    """Whether argv succeeds run as the user, with the user's groups and no capabilities (none
    of our units has DAC ones): only the files' mode bits and their directories' decide, as for
    the unit itself. The one way sleepyllama tries something as another user."""
    result = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                             "--init-groups", "--bounding-set=-all", "--inh-caps=-all", "--",
                             *argv], capture_output=True, timeout=10)
    return result.returncode == 0


def _readable(user: str, path: str) -> bool:
    """open(2) for reading as the unit's user."""
    try:
        entry = pwd.getpwnam(user or "root")
    except KeyError:
        return True  # no such user yet: nothing to try as
    return as_user(entry, ["head", "-c", "0", path])  # reads nothing: a key stays unread


def cannot_read(unit: str, paths: Iterable[str]) -> list[tuple[str, str]]:
    """(path, why) for each path the unit could not read. Nothing when it cannot be asked (not
    root: the test needs to become the unit's user)."""
    if os.geteuid() != 0:
        return []
    sandbox = sandbox_of(unit)
    found = []
    for path in paths:
        why = hidden(sandbox, path)
        try:
            if not why and not _readable(sandbox.user, path):
                why = f"{sandbox.user}, as its unit runs it, may not read it"
        except (OSError, subprocess.TimeoutExpired):
            continue  # no setpriv: nothing known, nothing said
        if why:
            found.append((path, why))
    return found


def idle_blind_spots(config: Config) -> list[str]:
    """What the idle unit cannot read of what it needs (the servers' API key files, to read
    their activity), each with why and the fix: a server it cannot read counts busy for ever."""
    needed = {}
    for server in config.servers.values():
        key_file = kinds.get(server.activity).key_file(server.command)
        if key_file:
            needed[key_file] = server.name
    return [f"[server.{needed[path]}] --api-key-file {path}: the idle check cannot read it ({why}), "
            "so it would count the server busy and the box would never sleep; put it where the "
            f"units can read it: sudo install -m 640 -o root -g sleepyllama {path} "
            f"/etc/sleepyllama/{needed[path]}.key, and give the server --api-key-file "
            f"/etc/sleepyllama/{needed[path]}.key"
            for path, why in cannot_read(IDLE_UNIT, needed)]
