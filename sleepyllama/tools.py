"""Running a system tool (nvidia-smi, ethtool, ip, modprobe) from a program that must not be held
up or filled up by it: where the tools live, and their output bounded in size and time. The
idle check's signals, the GPU check and `sleepyllama check` run their tools through it."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence

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

