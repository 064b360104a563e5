"""The backend's last real answers to requests that only look (the model list), for answering
them while it sleeps.

Filled from the backend itself while it is ready (after each wake, then again every REFRESH
while clients keep it awake), never on a client's path, and kept on disk in the proxy's
StateDirectory, so that exit_idle, a restart or a reboot of the always-on host keeps it. Only
2xx answers are kept: a backend that wants an API key answers our fetch 401, and a frontend must
not be told that from the cache.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from sleepyllama.proxy.probe import http

log = logging.getLogger(__name__)

REFRESH = 60.0  # seconds between fetches of the same answer while the backend is awake
MAX_BODY = 4 << 20  # a model list is a few KiB; past this, something else answers


@dataclass(frozen=True)
class Entry:
    status: int
    content_type: str
    body: bytes
    fetched_at: float  # wall-clock seconds


def headers(entry: Entry, now: float) -> list[tuple[str, str]]:
    """The cached answer's headers: the backend's own type and length, and where it came from."""
    return [("Content-Type", entry.content_type), ("Content-Length", str(len(entry.body))),
            ("Age", str(max(0, int(now - entry.fetched_at)))),
            ("X-Sleepyllama", "from-cache; backend-asleep")]


class AnswerCache:
    def __init__(self, base_url: str, requests_: tuple[str, ...], path: Path | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.targets = [request.split(" ", 1)[1] for request in requests_]  # "GET /x" -> "/x"
        self.path = path
        self.entries: dict[str, Entry] = {}
        self.fetching = False
        self.answered = 0  # requests answered from the cache since the proxy started
        self.load()

    def cached(self) -> frozenset[str]:
        return frozenset(f"GET {target}" for target in self.entries)

    def stale(self, now: float) -> bool:
        return any(target not in self.entries or now - self.entries[target].fetched_at > REFRESH
                   for target in self.targets)

    def fetch(self) -> None:
        """Fetch every target from the backend (blocking: run it in an executor)."""
        changed = False
        for target in self.targets:
            try:
                with http.get(self.base_url + target, timeout=(1.0, 5.0), stream=True,
                              allow_redirects=False) as answer:
                    body = answer.raw.read(MAX_BODY + 1, decode_content=True)
                    status, content_type = answer.status_code, answer.headers.get(
                        "Content-Type", "application/octet-stream")
            except requests.RequestException as error:
                log.debug("cache: GET %s failed: %s", target, error)
                continue
            if not 200 <= status < 300 or len(body) > MAX_BODY:
                log.debug("cache: GET %s answered %d (%d bytes): not kept", target, status, len(body))
                continue
            self.entries[target] = Entry(status, content_type, body, time.time())
            changed = True
        if changed:
            self.save()

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            stored = json.loads(self.path.read_text())
            self.entries = {target: Entry(item["status"], item["content_type"],
                                          base64.b64decode(item["body"]), item["fetched_at"])
                            for target, item in stored["entries"].items() if target in self.targets}
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s is unreadable (%s): starting with an empty cache", self.path, error)
            self.entries = {}

    def save(self) -> None:
        if self.path is None:
            return
        record = {"entries": {target: {**asdict(entry), "body": base64.b64encode(entry.body).decode()}
                              for target, entry in self.entries.items()}}
        try:
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(record))
            os.replace(temporary, self.path)
        except OSError as error:
            log.warning("cannot keep the cache in %s: %s", self.path, error)
