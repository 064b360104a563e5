"""What the proxy itself answers an HTTP client: one builder for every error it sends (a backend
that did not wake, a request refused while asleep, a config error), with an OpenAI-style body
that frontends show as it is."""

from __future__ import annotations

import json

from sleepyllama.words import format_duration

RETRY_AFTER = 30  # seconds, until wakes have been seen: long enough for a slow box to wake
REASONS = {400: "Bad Request", 401: "Unauthorized", 408: "Request Timeout",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def error_reply(status: int, message: str, kind: str, retry_after: int | None = None) -> bytes:
    """HTTP/1.1 `status` with {"error": {"message", "type", "code"}}; the connection closes
    after it. A 503 says when to try again (Retry-After)."""
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    if status == 503 and retry_after is None:
        retry_after = RETRY_AFTER
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + (f"Retry-After: {retry_after}\r\n" if retry_after is not None else "")
            + "Connection: close\r\n\r\n")
    return head.encode() + body


def backend_unavailable(backend: str, wake_timeout: float, waited: float, hint: str = "",
                        retry_after: int = RETRY_AFTER) -> bytes:
    """The 503 of a client held past its wake_timeout, naming the backend and the wait."""
    message = (f"sleepyllama: the backend {backend} did not wake up within "
               f"{format_duration(wake_timeout)} (this request waited {waited:.0f} s); "
               + (f"{hint}; " if hint else "") + f"try again in {retry_after} seconds")
    return error_reply(503, message, "backend_unavailable", retry_after)


def nothing_listens(hint: str, refused_for: float) -> bytes:
    """The 503 of a client held while the box answered but nothing listened on the port for
    longer than its server needs: said now, not after wake_timeout."""
    message = (f"sleepyllama: {hint} (refused for {refused_for:.0f} s, longer than a server "
               "needs to start listening; sleepyllama check on the box names the cause)")
    return error_reply(503, message, "backend_not_listening", RETRY_AFTER)
