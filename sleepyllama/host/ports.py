"""Who listens on a server's port, when it is not the server's own unit.

Ollama's installer leaves ollama.service on 11434, a hand-started llama-server keeps 8080: the
sleepyllama server then fails at each start ("another server holds its port"), and a look at
its port alone cannot tell which. ss names the process (as root), its cgroup names the unit.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WILDCARDS = {"0.0.0.0", "*", "::", "[::]", ""}
PROCESS = re.compile(r'\("([^"]*)",pid=(\d+)')


@dataclass(frozen=True)
class Listener:
    address: str
    command: str  # "" when ss may not say (not root)
    pid: int | None
    unit: str | None

    def describe(self) -> str:
        if not self.command:
            return f"another process on {self.address} (sudo sleepyllama check names it)"
        return f"{self.command} (pid {self.pid}{f', {self.unit}' if self.unit else ''})"


def unit_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The systemd service whose cgroup holds the process, if any."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        for part in reversed(line.rpartition(":")[2].split("/")):
            if part.endswith(".service"):
                return part
    return None


def parse_ss(output: str, proc: Path = Path("/proc")) -> list[Listener]:
    """`ss -Hltnp` lines: State Recv-Q Send-Q Local:Port Peer:Port [users:((...))]."""
    found = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        address = fields[3].rpartition(":")[0].split("%")[0]
        match = PROCESS.search(line)
        pid = int(match.group(2)) if match else None
        found.append(Listener(address, match.group(1) if match else "", pid,
                              unit_of(pid, proc) if pid else None))
    return found


def listeners(port: int) -> list[Listener]:
    """Every TCP listener on the port; [] when ss is missing or fails."""
    try:
        result = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_ss(result.stdout) if result.returncode == 0 else []


def overlaps(host: str, address: str) -> bool:
    """Whether a server binding host would collide with a listener on address."""
    host, address = host.strip("[]"), address.strip("[]")
    return host in WILDCARDS or address in WILDCARDS or host == address or (
        host == "localhost" and address in ("127.0.0.1", "::1"))


def foreign_holders(host: str, port: int, own_unit: str) -> list[Listener]:
    """Listeners that would keep a server on host:port from starting: not its own unit's."""
    return [listener for listener in listeners(port)
            if overlaps(host, listener.address) and listener.unit != own_unit]
