"""The backend's last real answers to requests that only look (the model list), for answering
them while it sleeps.

Filled from the backend itself while it is ready (after each wake, then again every REFRESH
while clients keep it awake), never on a client's path, and kept on disk in the proxy's
StateDirectory, so that exit_idle, a restart or a reboot of the always-on host keeps it. Only
2xx answers are kept: a backend that wants an API key answers our fetch 401, and a frontend must
not be told that from the cache.
"""

from __future__ import annotations

import binascii
import json
import logging
import time
from pathlib import Path

import requests
import urllib3

from sleepyllama import files, kinds
from sleepyllama.kept_answers import Entry, entry, stored
from sleepyllama.proxy.probe import http

log = logging.getLogger(__name__)

REFRESH = 60.0  # seconds between fetches of the same answer while the backend is awake
MAX_BODY = 4 << 20  # a model list is a few KiB; past this, something else answers


def headers(entry: Entry, now: float, backend: str = "asleep") -> list[tuple[str, str]]:
    """The cached answer's headers: the backend's own type and length, and where it came from
    (backend "asleep", or "waking" while a wake is under way)."""
    return [("Content-Type", entry.content_type), ("Content-Length", str(len(entry.body))),
            ("Age", str(max(0, int(now - entry.fetched_at)))),
            ("X-Sleepyllama", f"from-cache; backend-{backend}")]


class AnswerCache:
    def __init__(self, base_url: str, requests_: tuple[str, ...], path: Path | None,
                 kind: str = "auto", key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.targets = [request.split(" ", 1)[1] for request in requests_]  # "GET /x" -> "/x"
        self.kind = kind
        self.learned: str | None = None  # the kind its answers show, for kind = "auto"
        self.path = path
        self.entries: dict[str, Entry] = {}
        # when each target was last asked, answered or not: a target the backend does not know
        # (404 from another kind) is asked again after REFRESH, not at every ready
        self.asked: dict[str, float] = {}
        self.fetching = False
        self.answered = 0  # requests answered from the cache since the proxy started
        self.load()

    def fixed(self) -> dict[str, tuple[str, bytes]]:
        """Answers true whenever the backend sleeps (Ollama's /api/ps: nothing loaded), for the
        targets asked for, once the backend's kind is known (configured, or from what it
        answered)."""
        answers = kinds.asleep_answers(self.kind, self.entries)
        return {target: answer for target, answer in answers.items() if target in self.targets}

    def cached(self) -> frozenset[str]:
        return frozenset(f"GET {target}" for target in (*self.entries, *self.fixed()))

    def answer(self, target: str) -> Entry | None:
        if target in self.entries:
            return self.entries[target]
        fixed = self.fixed().get(target)
        return None if fixed is None else Entry(200, fixed[0], fixed[1], time.time())

    def fetched_targets(self) -> list[str]:
        """What is fetched: never a fixed answer, since what is true awake is not asleep."""
        return [target for target in self.targets if target not in kinds.all_asleep_answers()]

    def stale(self, now: float) -> bool:
        return any(now - self.asked.get(target, self.entries[target].fetched_at
                                         if target in self.entries else 0.0) > REFRESH
                   for target in self.fetched_targets())

    def fetch(self) -> None:
        """Fetch every target from the backend (blocking: run it in an executor)."""
        changed = False
        for target in self.fetched_targets():
            self.asked[target] = time.time()
            try:
                with http.get(self.base_url + target, timeout=(1.0, 5.0), stream=True,
                              allow_redirects=False, headers=self.headers) as answer:
                    body = answer.raw.read(MAX_BODY + 1, decode_content=True)
                    status, content_type = answer.status_code, answer.headers.get(
                        "Content-Type", "application/octet-stream")
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                # the body is read through urllib3, whose errors are its own (a box that went to
                # sleep mid-answer): each is one line, and the other targets are still fetched
                log.info("cache: GET %s failed: %s", target, str(error).splitlines()[0][:300])
                continue
            if not 200 <= status < 300 or len(body) > MAX_BODY:
                log.debug("cache: GET %s answered %d (%d bytes): not kept", target, status, len(body))
                if status in (401, 403, 404) and self.entries.pop(target, None) is not None:
                    # the backend no longer gives it (another server on the port, a new key): an
                    # old answer of it would be served stale for good
                    log.info("cache: GET %s now answers %d: its kept answer is dropped", target,
                             status)
                    changed = True
                continue
            self.entries[target] = Entry(status, content_type, body, time.time())
            changed = True
        if changed:
            self.save()
            learned = kinds.identify(self.entries)
            if self.kind == "auto" and learned and learned != self.learned:
                log.info("the backend answers as %s: its look-only answers are kept as such",
                         learned)
            self.learned = learned

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            stored = json.loads(self.path.read_text())
            self.entries = {}
            for target, item in stored["entries"].items():
                if target not in self.fetched_targets():
                    continue
                try:
                    self.entries[target] = entry(item)
                except (ValueError, binascii.Error) as error:
                    log.warning("%s: the kept answer to %s is unreadable (%s): dropped", self.path,
                                target, error)
            self.learned = kinds.identify(self.entries)
        except (OSError, ValueError, KeyError, TypeError, AttributeError,
                binascii.Error) as error:
            log.warning("%s is unreadable (%s): starting with an empty cache", self.path, error)
            self.entries = {}

    def save(self) -> None:
        if self.path is None:
            return
        record = {"kind": kinds.identify(self.entries),
                  "entries": {target: stored(entry) for target, entry in self.entries.items()}}
        try:
            files.write_atomic(self.path, json.dumps(record).encode(), 0o600)
        except OSError as error:
            log.warning("cannot keep the cache in %s: %s", self.path, error)
