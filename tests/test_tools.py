"""Running a system tool (tools.py): its output bounded in size and in time, and the tool killed
either way."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sleepyllama.tools import bounded_output


def test_a_tool_that_prints_too_much_is_stopped(tmp_path: Path) -> None:
    chatty = tmp_path / "chatty"
    chatty.write_text("#!/bin/sh\nhead -c 5000000 /dev/zero\n")
    chatty.chmod(0o755)
    with pytest.raises(ValueError, match="more than"):
        bounded_output([str(chatty)], 10.0, 1 << 20)


def test_a_tool_that_hangs_is_given_up_on(tmp_path: Path) -> None:
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\necho '0, P8, 0'\nsleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(subprocess.TimeoutExpired):
        bounded_output([str(slow)], 0.5, 1 << 20)


def test_what_a_tool_says_and_its_exit_status() -> None:
    assert bounded_output(["/bin/echo", "0, P8, 0"], 5.0, 100) == (0, "0, P8, 0\n")
    assert bounded_output(["/bin/sh", "-c", "echo no >&2; exit 3"], 5.0, 100) == (3, "no\n")
