"""What a client hears when the backend did not wake in time: for HTTP, a 503 it can act on."""

from __future__ import annotations

import json

from sleepyllama.config import format_duration

RETRY_AFTER = 30  # seconds: long enough for a slow box to finish waking


def backend_unavailable(backend: str, wake_timeout: float, waited: float, hint: str = "") -> bytes:
    """HTTP/1.1 503 with Retry-After and an OpenAI-style error body naming the backend."""
    message = (
        f"sleepyllama: the backend {backend} did not wake up within "
        f"{format_duration(wake_timeout)} (this request waited {waited:.0f} s); "
        + (f"{hint}; " if hint else "") + f"try again in {RETRY_AFTER} seconds"
    )
    body = json.dumps(
        {"error": {"message": message, "type": "backend_unavailable", "code": 503}}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {RETRY_AFTER}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode() + body
