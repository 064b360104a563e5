"""What every activity signal shares: a reading (busy, idle or unknown, with the human reason
that ends up in the journal and in `sleepyllama status`), and running a tool with bounded output.

A signal that cannot be read is UNKNOWN, never IDLE, and the idle decision treats UNKNOWN as
busy: sleepyllama never suspends on an error.
"""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Activity(enum.Enum):
    IDLE = "idle"
    BUSY = "busy"
    UNKNOWN = "unknown"  # could not be read: counts as busy


@dataclass(frozen=True)
class Reading:
    signal: str
    activity: Activity
    reason: str
    # the fix, where this signal alone might keep the box up for good (a GPU stuck in P0)
    hint: str = ""


class Signal(Protocol):
    name: str

    def read(self) -> Reading: ...



# where the system's tools live (ethtool, ip, modprobe): sbin is not on a user's PATH
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def bounded_output(argv: Sequence[str], timeout: float, limit: int) -> tuple[int, str]:
    """(exit status, stdout and stderr) of a command, read up to `limit` bytes within
    `timeout`: ValueError past the limit, subprocess.TimeoutExpired past the time. Either way
    the command is killed: a broken tool must not cost the idle check its memory or its turn."""
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True) as process:
        assert process.stdout is not None
        deadline, chunks, size = time.monotonic() + timeout, [], 0
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise subprocess.TimeoutExpired(argv, timeout)
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ValueError(f"{argv[0]} printed more than {limit} bytes")
                chunks.append(chunk)
            returncode = process.wait(max(0.1, deadline - time.monotonic()))
        finally:
            selector.close()
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # and whatever it started
    return returncode, b"".join(chunks).decode("utf-8", "replace")

