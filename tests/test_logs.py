"""Logging (logs.py): a journald priority on every line under systemd, plain lines for a
person; read from a real child process whose stderr is, or is not, the stream systemd named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = """
import logging, os, sys
from sleepyllama import logs
if len(sys.argv) > 1:  # stderr is the stream JOURNAL_STREAM names, as systemd sets it up
    status = os.fstat(2)
    os.environ["JOURNAL_STREAM"] = f"{status.st_dev}:{status.st_ino}"
log = logs.setup("sleepyllama-x")
log.info("one\\ntwo")
log.warning("careful")
log.debug("not shown")
logging.getLogger("urllib3").info("a probe")
"""


def run(*arguments: str, journal_stream: str | None = None) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("JOURNAL_STREAM", None)
    if journal_stream is not None:
        environment["JOURNAL_STREAM"] = journal_stream
    return subprocess.run([sys.executable, "-c", PROGRAM, *arguments], capture_output=True,
                          text=True, env=environment, timeout=60, check=True).stderr


def test_under_journald_every_line_carries_its_priority() -> None:
    assert run("journal") == "<6>one\n<6>two\n<4>careful\n"


def test_for_a_person_plain_lines_named_for_the_program() -> None:
    assert run() == "sleepyllama-x: INFO: one\ntwo\nsleepyllama-x: WARNING: careful\n"


def test_a_journal_stream_that_is_not_stderr_is_not_believed() -> None:
    """A program started from a unit's shell keeps JOURNAL_STREAM though its stderr moved."""
    assert run(journal_stream="1:2").startswith("sleepyllama-x: INFO: one")
