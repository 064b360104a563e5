"""Is a backend ready (proxy/probe.py): a real HTTP server answering 200, 503 and 404 as the kinds
do, a refused port, a bare TCP check, the words for a refusal, and a Session per thread."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from sleepyllama import config
from sleepyllama.config import Address
from sleepyllama.proxy import probe

from conftest import free_port


@pytest.fixture
def server() -> Iterator[dict[str, int]]:
    """An HTTP server whose answer to each path the test sets."""
    answers: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answers.get(self.path, 404))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    answers["port"] = httpd.server_address[1]
    yield answers
    httpd.shutdown()
    httpd.server_close()


def proxy_for(port: int, extra: str = "") -> config.ProxyConfig:
    return config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{port}"\nmac = "ab:cd:ef:01:23:45"\n'
                        + extra).proxy("t")


def test_a_loading_llama_server_is_not_ready_and_says_so(server: dict[str, int]) -> None:
    server["/health"] = 503
    assert probe.probe(proxy_for(server["port"], 'kind = "llama-server"\n')) == (False, "HTTP 503")
    server["/health"] = 200
    assert probe.probe(proxy_for(server["port"], 'kind = "llama-server"\n')) == (True, "HTTP 200")


def test_a_404_means_not_this_kinds_ready_check_and_the_next_is_asked(
        server: dict[str, int]) -> None:
    """Ollama has no /health: "auto" asks each kind's ready check in turn."""
    server["/api/version"] = 200
    assert probe.probe(proxy_for(server["port"])) == (True, "HTTP 200")


def test_a_refused_port_and_a_bare_tcp_check() -> None:
    port = free_port()
    ready, why = probe.probe(proxy_for(port))
    assert not ready and why == "Connection refused"
    assert "nothing listens on port" in probe.hint(why, Address("127.0.0.1", port))
    with socket.create_server(("127.0.0.1", 0)) as listening:
        tcp = proxy_for(listening.getsockname()[1], 'health_url = ""\n')
        assert probe.probe(tcp) == (True, "TCP connect")


def test_each_thread_that_probes_has_a_session_of_its_own() -> None:
    """requests' maintainers advise a Session per thread; up to 16 probe threads shared one."""
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(probe.http.session)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(session) for session in seen}) == 3
    assert all(session.trust_env is False for session in seen)  # no environment proxies
