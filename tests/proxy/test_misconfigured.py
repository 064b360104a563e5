"""A proxy whose config is broken (proxy/misconfigured.py), under the real
systemd-socket-activate: every HTTP client hears why, the port stays open, and the fixed file
serves at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from conftest import (
    GET_HEALTH,
    MAC,
    ProxyRun,
    SleepingBackend,
    free_port,
    http_request,
    proxy_table,
    require,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("socket_activate")


@pytest.fixture
def socket_activate() -> None:
    require("systemd-socket-activate")


def status_code(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_config_error_exits_78_with_one_line(tmp_path, cleanup) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[proxy.llama]\nbackend = "127.0.0.1:8080"\nmac = "nope"\n')
    result = subprocess.run([sys.executable, "-m", "sleepyllama.proxy", "--config", str(config),
                             "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True)
    assert result.returncode == 78
    assert result.stderr.count("\n") == 1
    assert "[proxy.llama] mac: expected a MAC address" in result.stderr


def test_a_config_typo_never_closes_the_port_and_the_fix_serves_at_once(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    good = proxy_table(backend, wol_interval="0.5s")
    proxy = ProxyRun(tmp_path, good.replace(f'"{MAC}"', '"c6:d9:42:9c:af"'))
    cleanup.append(proxy)
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 503
    fds = proxy.fd_count()  # the first client's, if the proxy has not closed it yet, included
    for _ in range(12):  # more than systemd's start limit would have allowed
        response = http_request(proxy.address, GET_HEALTH)
        assert status_code(response) == 503, response[:300]
        body = json.loads(response.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["type"] == "config_error"
        assert "[proxy.llama] mac: expected a MAC address" in body["error"]["message"]
    wait_for(lambda: proxy.fd_count() <= fds, timeout=5, what="every answered client closed")
    # a client that does not speak HTTP is closed without an answer
    with socket.create_connection(proxy.address, timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00")  # a TLS ClientHello's first bytes
        assert raw.recv(100) == b""
    assert any("config error, answering 503 until fixed" in s for s in proxy.notify.statuses())
    assert any("READY=1" in m for m in proxy.notify.messages)
    assert backend.packets() == []  # nothing woken on a config it cannot read

    early = socket.create_connection(proxy.address, timeout=10)  # connected before the fix
    wait_for(lambda: proxy.holds(early), what="the proxy to accept the early client")
    proxy.config.write_text(good)  # fixed: the next request is served, no command needed
    wait_for(lambda: "the config is valid now" in proxy.log(), what="the fixed config")
    # a client met while the config was still broken gets its answer, not a silent close
    early.sendall(GET_HEALTH)
    assert early.recv(65536).startswith(b"HTTP/1.1 503"), "closed without an answer"
    early.close()
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    assert proxy.process.popen.poll() is None
    assert proxy.log().count("answering every client with 503") == 1  # one process all along
