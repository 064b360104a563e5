"""Is a backend ready? Its kind's ready check (llama-server's /health is 503 while a model loads;
Ollama has no /health, and its /api/version answers once it serves), the health_url configured,
or where that is "", a TCP connect. Blocking: the proxy runs probes in a thread."""

from __future__ import annotations

import socket
import threading
from typing import Any

import requests

from sleepyllama import kinds
from sleepyllama.config import Address, ProxyConfig

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 3.0


class ThreadSessions(threading.local):
    """A requests Session for each thread that asks (the prober runs up to 16 at once, the cache
    fetches in another): requests' maintainers advise one per thread, a Session's connection
    pool and cookies not being safe to share. No proxies from the environment: every request of
    ours must reach the LAN address itself."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False

    def get(self, url: str, **options: Any) -> requests.Response:
        return self.session.get(url, **options)

    def post(self, url: str, **options: Any) -> requests.Response:
        return self.session.post(url, **options)


http = ThreadSessions()


def ready_urls(config: ProxyConfig) -> list[str]:
    """Where readiness is asked, in order: the configured health_url, or each ready path its
    kind ("auto": any kind) may answer on."""
    if config.health_url is not None:
        return [config.health_url] if config.health_url else []
    return [f"http://{config.backend}{path}" for path in kinds.ready_paths(config.kind)]


def probe(config: ProxyConfig, connect: float = CONNECT_TIMEOUT,
          answer: float = READ_TIMEOUT) -> tuple[bool, str]:
    """(ready, why): why is "HTTP 200", "HTTP 503" or the connection error, for the journal.
    A 404 means "not this kind's ready check": the next kind's is asked. connect and answer:
    the seconds a connect and the answer may take."""
    urls = ready_urls(config)
    if not urls:
        return tcp_probe(config.backend, connect)
    why = ""
    for url in urls:
        try:
            with http.get(url, timeout=(connect, answer),
                          allow_redirects=False, stream=True) as response:
                status = response.status_code
        except requests.RequestException as error:
            return False, _short(error)
        if status != 404:
            return status == 200, f"HTTP {status}"
        why = why or f"HTTP {status}"
    return False, why


def hint(why: str, backend: Address) -> str:
    """What a probe's answer tells a person. "Connection refused" comes from the box's own
    kernel: the box is up, and nothing listens on that port."""
    if why == "Connection refused":
        return (f"the box at {backend.host} answers, but nothing listens on port "
                f"{backend.port}: a wrong port, or a server listening on 127.0.0.1 only "
                "(give it --host 0.0.0.0)?")
    return ""


def tcp_probe(backend: Address, timeout: float = CONNECT_TIMEOUT) -> tuple[bool, str]:
    try:
        socket.create_connection((backend.host, backend.port), timeout=timeout).close()
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
