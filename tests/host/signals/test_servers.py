"""The servers signal (host/signals/servers.py) against the fake llama-server, with and without
/metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sleepyllama.config import ServerConfig
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.servers import ServersSignal

from conftest import FAKE_SERVER, free_port, wait_for


def fake_llama(port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(port), *extra],
                            stdout=subprocess.PIPE)


def chat(port: int) -> None:
    body = b'{"messages": []}'
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        while sock.recv(65536):
            pass


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "slots-fallback"])
def test_servers_signal_sees_a_request_that_came_and_went(tmp_path: Path, metrics: bool) -> None:
    port = free_port()
    server = ServerConfig("llama", ("llama-server",), f"http://127.0.0.1:{port}/health",
                          activity="llama-server")
    signal = ServersSignal([server], {})
    assert signal.read().activity is Activity.IDLE  # not running counts as idle
    assert "llama: not running" in signal.read().reason
    process = fake_llama(port, "--load-seconds", "1", "-np", "2", *(["--metrics"] if metrics else []))
    try:
        wait_for(lambda: signal.read().reason != "llama: not running", what="the fake server")
        loading = signal.read()
        assert (loading.activity, loading.reason) == (Activity.BUSY, "llama: loading its model")
        wait_for(lambda: signal.read().activity is Activity.IDLE, what="the model to load")
        assert "nothing since the last check" in signal.read().reason
        chat(port)  # came and went between two reads
        reading = signal.read()
        assert reading.activity is Activity.BUSY and "since the last check" in reading.reason
        assert signal.read().activity is Activity.IDLE  # and once only
        # the counters survive into a new signal, as they do through the state file
        again = ServersSignal([server], signal.counters)
        chat(port)
        assert again.read().activity is Activity.BUSY
    finally:
        process.terminate()
        process.wait()


def test_a_server_of_kind_none_is_idle_not_unknown() -> None:
    server = ServerConfig("whisper", ("whisper-server",), "http://127.0.0.1:1/health")
    reading = ServersSignal([server], {}).read()
    assert reading.activity is Activity.IDLE
    assert reading.reason == "whisper: its requests cannot be seen (no activity endpoint)"


def test_an_unreadable_server_is_unknown(tmp_path: Path) -> None:
    port = free_port()
    # something else answers on its port: HTTP, but no llama-server
    other = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                              str(port), "--directory", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        server = ServerConfig("llama", ("llama-server",), f"http://127.0.0.1:{port}/health",
                              activity="llama-server")
        signal = ServersSignal([server], {})
        wait_for(lambda: signal.read().activity is not Activity.IDLE, what="the other server")
        reading = signal.read()
        assert reading.activity is Activity.UNKNOWN and "/props answered HTTP 404" in reading.reason
    finally:
        other.terminate()
        other.wait()


def test_a_server_started_since_the_last_check_counts_as_used() -> None:
    """install.sh restarted the server and the box slept 26 s later: the restart's fresh
    counter of 0 read as idle, so the idle clock ran on from before the restart."""
    server = ServerConfig("whisper", ("whisper-server",), "http://127.0.0.1:1/health")
    last_check = 1_000_000.0
    restarted = ServersSignal([server], {}, clock=lambda: last_check + 30, last_check=last_check,
                              started=lambda name: last_check + 10)
    reading = restarted.read()
    assert reading.activity is Activity.BUSY
    assert reading.reason == "whisper: started 20s ago (a start or restart counts as use)"
    earlier = ServersSignal([server], {}, clock=lambda: last_check + 30, last_check=last_check,
                            started=lambda name: last_check - 600)
    assert earlier.read().activity is Activity.IDLE  # started before the last check: nothing new
    unknown = ServersSignal([server], {}, last_check=last_check, started=lambda name: None)
    assert unknown.read().activity is Activity.IDLE
