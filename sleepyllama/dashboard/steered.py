"""The stay-awakes this page (or Home Assistant through it) asked of the GPU boxes, and until
when: the box keeps its own inhibitor, but only the page knows which box it asked, so it
remembers, in its StateDirectory, to show "staying awake until 23:54" with a Cancel. Read
back checked: a time that is no time, or past a week from now, is dropped."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from sleepyllama import files, steer

log = logging.getLogger(__name__)


class Steered:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()

    def _read(self, now: float) -> dict[str, float]:
        if self.path is None:
            return {}
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("%s is unreadable (%s): no stay-awake shown", self.path, error)
            return {}
        if not isinstance(record, dict):
            return {}
        return {name: float(until) for name, until in record.items()
                if isinstance(name, str) and files.within(until, now, now + steer.MAX_STAY + 60)}

    def _write(self, record: dict[str, float]) -> None:
        if self.path is None:
            return
        try:
            files.write_atomic(self.path, json.dumps(record).encode(), 0o600)
        except OSError as error:
            log.warning("cannot keep the stay-awakes in %s: %s", self.path, error.strerror)

    def until(self, name: str, now: float | None = None) -> float | None:
        return self._read(time.time() if now is None else now).get(name)

    def stay(self, name: str, until: float) -> None:
        with self.lock:
            record = self._read(time.time())
            record[name] = until
            self._write(record)

    def over(self, name: str) -> None:
        """Cancelled, or the box slept (a stay-awake does not outlive a sleep)."""
        with self.lock:
            record = self._read(time.time())
            if record.pop(name, None) is not None:
                self._write(record)
