"""Small HTTP GETs for the inference host's programs, through the standard library's http.client.

The idle check runs every 30 s on a box that should be idle: importing requests cost 60 ms of
CPU there, http.client 20 ms. The proxy, long-running, keeps requests for its probes.
Environment proxies are never used: every request of ours must reach the address itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 1 << 20  # /props, /metrics and the like are a few KiB


class Unreachable(OSError):
    """Nothing answers there: refused, reset, no route, no such host."""


class Refused(Unreachable):
    """The host answered that nothing listens on that port: the server is not running."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


def get(url: str, timeout: float, headers: dict[str, str] | None = None) -> Answer:
    """GET url. Raises Unreachable when nothing answers, TimeoutError when the whole answer has
    not come within `timeout` (a server trickling a byte a second included), and ValueError for
    an answer that is not HTTP or too large."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # the socket's timeout bounds each read; this bounds them all together
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, cut)
    timer.daemon = True
    timer.start()
    try:
        connection.request("GET", target, headers={**(headers or {}), "Connection": "close"})
        response = connection.getresponse()
        body = response.read(MAX_BODY + 1)
        if expired.is_set():
            raise TimeoutError(f"{parts.path}: no whole answer within {timeout:g} s")
        if len(body) > MAX_BODY:
            raise ValueError(f"{parts.path}: answer larger than {MAX_BODY} bytes")
        return Answer(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    except TimeoutError:
        raise
    except (http.client.HTTPException, OSError) as error:
        if expired.is_set():
            raise TimeoutError(f"{parts.path}: no whole answer within {timeout:g} s") from None
        if isinstance(error, http.client.HTTPException):
            raise ValueError(f"{parts.path}: not an HTTP answer ({type(error).__name__})") from None
        raise _unreachable(error) from None
    finally:
        timer.cancel()
        connection.close()


def _unreachable(error: OSError) -> Unreachable:
    if isinstance(error, ConnectionRefusedError):
        return Refused(error.errno, error.strerror or str(error))
    return Unreachable(error.errno, error.strerror or str(error))

