"""Is a backend ready? An HTTP health check (llama-server's /health is 503 while a model loads)
or, where there is no health URL, a TCP connect. Blocking: the proxy runs probes in a thread."""

from __future__ import annotations

import socket

import requests

from sleepyllama.config import Address

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 3.0

# no proxies from the environment: every request of ours must reach the LAN address itself
http = requests.Session()
http.trust_env = False


def probe(health_url: str, backend: Address) -> tuple[bool, str]:
    """(ready, why): why is "HTTP 200", "HTTP 503" or the connection error, for the journal."""
    if not health_url:
        return tcp_probe(backend)
    try:
        with http.get(health_url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                          allow_redirects=False, stream=True) as response:
            return response.status_code == 200, f"HTTP {response.status_code}"
    except requests.RequestException as error:
        return False, _short(error)


def tcp_probe(backend: Address) -> tuple[bool, str]:
    try:
        socket.create_connection((backend.host, backend.port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        return False, error.strerror or str(error)
    return True, "TCP connect"


def _short(error: requests.RequestException) -> str:
    """The errno words ("Connection refused") that requests buries under urllib3's wrappers."""
    pending: list[BaseException] = [error]
    for _ in range(12):  # the chain is short; never loop on a cycle
        if not pending:
            break
        cause = pending.pop(0)
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        pending += [e for e in (getattr(cause, "reason", None), cause.__cause__, cause.__context__,
                                *cause.args) if isinstance(e, BaseException)]
    return "timed out" if isinstance(error, requests.Timeout) else type(error).__name__
