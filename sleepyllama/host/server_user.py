"""The model servers' user and what it may reach.

sleepyllama-server@NAME runs as the system user sleepyllama (User= in the unit; a drop-in may
name another). A newcomer's llama-server built under a home directory, or a model kept there,
is closed to that user (homes are 0700 or 0750): the server would fail at each start. Trying
each path as that user (setpriv, so permissions, ACLs and every directory on the way count)
finds it before the start does, and names the directory that shuts it out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import systemd
from sleepyllama.host import unit_view

DEFAULT_USER = "sleepyllama"  # sysusers.d/sleepyllama.conf, User= of sleepyllama-server@.service


@dataclass(frozen=True)
class ShutOut:
    path: str
    user: str
    action: str  # "read" or "run"
    closed: str  # the first directory on the way that the user may not pass, else the path

    def fix(self, setfacl: bool | None = None) -> str:
        """The command that lets the user in; setfacl: whether that tool is installed (None:
        look), since Debian ships it in a package of its own."""
        if setfacl is None:
            setfacl = shutil.which("setfacl") is not None
        first = "" if setfacl else "sudo apt-get install acl, then "
        if self.closed != self.path:
            return (f"{self.closed} is closed to it: {first}sudo setfacl -m u:{self.user}:x "
                    f"{self.closed} (or put the file under /opt or /srv)")
        return (f"{first}sudo setfacl -m u:{self.user}:r{'x' if self.action == 'run' else ''} "
                f"{self.path}")


def server_user(name: str) -> str:
    """User= of the server's unit as systemd has loaded it (a drop-in may change it)."""
    shown = systemd.show(systemd.server_unit(name), "User").get("User", "").strip()
    # empty: no unit installed yet (check before install.sh) or no systemd; what install.sh gives
    return shown or DEFAULT_USER


def _may(user: pwd.struct_passwd, test: str, path: str) -> bool:
    """access(2) as the user: what the server itself will meet."""
    return unit_view.as_user(user, ["test", test, path])


def shut_out(paths: Iterable[tuple[str, str]], user_name: str) -> list[ShutOut]:
    """Of (path, "read" | "run") pairs, those the user may not read or run. Nothing when it
    cannot be tried: not root, no such user yet, root itself, or no setpriv."""
    if os.geteuid() != 0 or user_name in ("", "root"):
        return []
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        return []
    found = []
    try:
        for path, action in paths:
            if _may(user, "-x" if action == "run" else "-r", path):
                continue
            closed = next((str(parent) for parent in reversed(Path(path).absolute().parents)
                           if not _may(user, "-x", str(parent))), path)
            found.append(ShutOut(path, user_name, action, closed))
    except (OSError, subprocess.TimeoutExpired):
        return found
    return found
