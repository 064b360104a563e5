"""Logging to stderr: journald priority prefixes under systemd, plain lines for a person."""

from __future__ import annotations

import logging
import os
import sys

# syslog priorities as journald reads them from a "<N>" line prefix (sd-daemon.h)
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        # one journal entry per line: a multi-line message keeps its priority on every line
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def under_journald() -> bool:
    """True when stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        status = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def setup(program: str, verbose: bool = False) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter(f"{program}: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # requests/urllib3 log every probe at DEBUG; that is noise even when debugging us
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return logging.getLogger(program)
