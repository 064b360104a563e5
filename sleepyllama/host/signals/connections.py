"""Connections the user names by local port ([idle] ports = [22, 445]): an SMB copy, an rsync, an
SSH tunnel. An established TCP connection to one of these ports keeps the box up. Read from
/proc/net/tcp and tcp6 (the kernel's own table; no tool needed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.words import count

ESTABLISHED = "01"  # the kernel's TCP_ESTABLISHED, as /proc/net/tcp prints it


def established_local_ports(table: str) -> list[int]:
    """The local port of each established connection in a /proc/net/tcp or tcp6 table."""
    ports = []
    for line in table.splitlines()[1:]:  # the first line names the columns
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            raise ValueError(f"unexpected line in the TCP table: {line.strip()!r}")
        if fields[3] == ESTABLISHED:
            ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def read_tables(proc: Path = Path("/proc/net")) -> list[str]:
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append((proc / name).read_text())
        except FileNotFoundError:
            continue  # a kernel without IPv6
    return tables


def busy_ports(watched: Sequence[int], tables: Sequence[str]) -> Counter[int]:
    counted: Counter[int] = Counter()
    for table in tables:
        counted.update(port for port in established_local_ports(table) if port in watched)
    return counted


class ConnectionsSignal:
    name = "connections"

    def __init__(self, ports: Sequence[int],
                 read: Callable[[], Sequence[str]] = read_tables) -> None:
        self.ports, self.read_tables = ports, read

    def read(self) -> Reading:
        try:
            counted = busy_ports(self.ports, self.read_tables())
        except (OSError, ValueError) as error:
            return Reading(self.name, Activity.UNKNOWN, f"cannot read the TCP table: {error}")
        if counted:
            return Reading(self.name, Activity.BUSY, ", ".join(
                f"{count(number, 'connections')} on port {port}"
                for port, number in sorted(counted.items())))
        return Reading(self.name, Activity.IDLE, "no connection on port " +
                       ", ".join(str(port) for port in self.ports))
