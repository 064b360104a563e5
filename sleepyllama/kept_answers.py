"""One answer a proxy keeps for while its box sleeps, as it crosses from the proxy (proxy/cache.py
writes NAME.answers.json in its StateDirectory) to the page (dashboard/boxes.py lists the models
in it): the record, its writing and its checked reading, in one place both import."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass

from sleepyllama import files


@dataclass(frozen=True)
class Entry:
    status: int
    content_type: str
    body: bytes
    fetched_at: float  # wall-clock seconds


def stored(answer: Entry) -> dict:
    """As the answers file holds it: the body in base64."""
    return {**asdict(answer), "body": base64.b64encode(answer.body).decode()}


def entry(item: object) -> Entry:
    """One stored answer, checked for shape and range: ValueError when it is not one."""
    if not isinstance(item, dict):
        raise ValueError(f"an entry is {type(item).__name__}, not an object")
    status, content_type, body, at = (item.get(key) for key in
                                      ("status", "content_type", "body", "fetched_at"))
    if (isinstance(status, bool) or not isinstance(status, int) or not 200 <= status < 300
            or not isinstance(content_type, str) or not isinstance(body, str)
            or not files.finite(at)):
        raise ValueError(f"malformed entry {str(item)[:80]}")
    if not content_type.isprintable() or len(content_type) > 200:
        # it becomes a header line: CR, LF or any control character would break the answer
        raise ValueError(f"content_type {content_type[:80]!r} is no header value")
    return Entry(status, content_type, base64.b64decode(body, validate=True), float(at))
