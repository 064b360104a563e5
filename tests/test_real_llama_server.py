"""Against a real llama-server: what wakes it, what counts as use, and the proxy's wake path.

./run-tests builds llama-server from the llama-cpp-python sdist (cached in .cache/) and a tiny
random-weight model, and names them in LLAMA_SERVER and LLAMA_MODEL; other binaries and models can
be named the same way. Without them these tests are skipped, with that reason.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleepyllama import config as configuration
from sleepyllama.config import ServerConfig
from sleepyllama.host import state
from sleepyllama.host.activity import LlamaServer
from sleepyllama.host.idle import Action
from sleepyllama.host.idle_check import check, signals_for
from sleepyllama.host.signals import Activity, ServersSignal
from sleepyllama.host.suspend import SystemOps, sleep_now
from sleepyllama.proxy.probe import http

from conftest import (
    MAC,
    WOL_LISTENER,
    NotifySocket,
    Process,
    ProxyRun,
    chat_request,
    free_port,
    proxy_table,
    wait_for,
)

BINARY, MODEL = os.environ.get("LLAMA_SERVER", ""), os.environ.get("LLAMA_MODEL", "")
BOOT = "boot-1"

pytestmark = pytest.mark.skipif(
    not (BINARY and os.access(BINARY, os.X_OK) and Path(MODEL).is_file()),
    reason="set LLAMA_SERVER=/path/to/llama-server and LLAMA_MODEL=/path/to/model.gguf (./run-tests "
    "builds both) to test against a real llama-server")


def llama_command(port: int, *extra: str) -> list[str]:
    return [BINARY, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "-c", "512",
            "-np", "2", *extra]


class LlamaServerRun:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process(llama_command(self.port, *extra), directory / "llama-server.log")
        wait_for(self.healthy, timeout=60, what="llama-server to load its model")

    def healthy(self) -> bool:
        try:
            return http.get(self.url + "/health", timeout=1).status_code == 200
        except OSError:
            return False

    def sleeping(self) -> bool:
        return http.get(self.url + "/props", timeout=5).json()["is_sleeping"] is True

    def complete(self, text: str = "Say hi") -> str:
        from openai import OpenAI

        client = OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": text}], max_tokens=8)
        return answer.choices[0].message.content or ""

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def llama(tmp_path: Path) -> Iterator[LlamaServerRun]:
    server = LlamaServerRun(tmp_path, "--metrics")
    yield server
    server.stop()


def config_for(server: LlamaServerRun) -> configuration.Config:
    command = ", ".join(json.dumps(arg) for arg in llama_command(server.port))
    return configuration.parse(f"[server.llama]\ncommand = [{command}]\n[idle]\ntimeout = \"10m\"\n"
                               "gpu = \"off\"\ninhibitors = false\n")


class NoSystem:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def ops(self) -> SystemOps:
        return SystemOps(stop_servers=lambda _timeout: self.calls.append("stop") or [],
                         start_servers=lambda: self.calls.append("start"),
                         suspend=lambda: self.calls.append("suspend"))


def test_a_completion_between_two_checks_restarts_the_idle_clock(llama: LlamaServerRun,
                                                                 tmp_path: Path) -> None:
    config, path, system = config_for(llama), tmp_path / "idle.json", NoSystem()
    assert config.server("llama").activity == "llama-server"  # from the program's name
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=100.0)
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=130.0)
    assert json.loads(path.read_text())["idle_since"] == 100.0
    llama.complete()  # a short request, answered long before the next check
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=160.0)
    record = json.loads(path.read_text())
    assert record["idle_since"] is None, record["reason"]
    assert "tokens since the last check" in record["reason"]
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=190.0)
    assert json.loads(path.read_text())["idle_since"] == 190.0  # counted once, then idle again
    assert system.calls == []


def test_a_request_just_before_the_last_look_keeps_the_box_up(llama: LlamaServerRun) -> None:
    config, system = config_for(llama), NoSystem()
    signals = signals_for(config, {})
    assert all(signal.read().activity is Activity.IDLE for signal in signals)  # the verdict's look
    llama.complete()
    assert not sleep_now(config, signals, "idle for 10m", system.ops())
    assert system.calls == []  # no server was stopped under the request


def test_a_sleeping_model_stays_asleep_under_sleepyllama(tmp_path: Path) -> None:
    """llama-server under sleepyllama-server, with idle checks running: its own sleep
    (--sleep-idle-seconds) unloads the model and nothing of ours loads it again; it reads idle;
    then a request wakes it and is counted."""
    port = free_port()
    command = llama_command(port, "--metrics", "--sleep-idle-seconds", "3")
    config_file = tmp_path / "sleepyllama.toml"
    config_file.write_text("[server.llama]\ncommand = [" + ", ".join(json.dumps(a) for a in command)
                           + "]\n[idle]\ntimeout = \"1h\"\ngpu = \"off\"\ninhibitors = false\n")
    notify = NotifySocket(tmp_path / "notify")
    supervisor = Process([sys.executable, "-m", "sleepyllama.host.supervisor", "--config",
                          str(config_file), "--instance", "llama"], tmp_path / "supervisor.log",
                         {**os.environ, "NOTIFY_SOCKET": str(notify.path)})
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=60, what="READY")
        config, path = configuration.load(config_file), tmp_path / "idle.json"
        source = LlamaServer(f"http://127.0.0.1:{port}")
        wait_for(lambda: source.look().unloaded, timeout=20, what="llama-server to sleep")
        for second in range(10):  # 10 s of idle checks, with the supervisor polling too
            check(config, path, dry_run=True, boot_id=BOOT, now=1000.0 + second)
            time.sleep(1)
        assert source.look().unloaded, "something of ours woke the sleeping model"
        record = json.loads(path.read_text())
        assert record["verdict"] == "stay awake" and record["idle_since"] == 1000.0
        assert "model unloaded (llama-server sleeping)" in record["reason"]
        assert "ready · model unloaded (llama-server sleeping)" in notify.statuses()
        assert "exiting sleeping state" not in supervisor.text()

        body = json.dumps({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8})
        answer = http.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, timeout=60)
        assert answer.status_code == 200
        check(config, path, dry_run=True, boot_id=BOOT, now=1020.0)
        record = json.loads(path.read_text())
        assert record["idle_since"] is None and "tokens since the last check" in record["reason"]
    finally:
        supervisor.stop()
        notify.close()
    assert "exiting sleeping state" in supervisor.text()  # the request woke it, and only that


def test_without_metrics_the_slots_fallback_never_wakes_a_sleeping_model(tmp_path: Path) -> None:
    server = LlamaServerRun(tmp_path, "--sleep-idle-seconds", "2")
    try:
        config = config_for(server)
        path = tmp_path / "idle.json"
        check(config, path, dry_run=True, boot_id=BOOT, now=0.0)  # awake: reads /slots
        assert "first look" in json.loads(path.read_text())["reason"]
        wait_for(server.sleeping, timeout=20, what="llama-server to sleep")
        for second in range(4):
            check(config, path, dry_run=True, boot_id=BOOT, now=10.0 + second)
            time.sleep(0.5)
        assert server.sleeping()
        assert "model unloaded" in json.loads(path.read_text())["reason"]
        server.complete()  # wakes it: the fallback counts the task
        check(config, path, dry_run=True, boot_id=BOOT, now=20.0)
        assert "used since the last check" in json.loads(path.read_text())["reason"]
    finally:
        server.stop()


def test_status_shows_a_request_in_flight(llama: LlamaServerRun) -> None:
    server = ServerConfig("llama", tuple(llama_command(llama.port)), llama.url + "/health",
                          activity="llama-server")
    body = json.dumps({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4000,
                       "ignore_eos": True, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", llama.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.recv(1)  # streaming has begun
        reading = ServersSignal([server], {}).read()
    assert reading.activity is Activity.BUSY
    assert reading.reason in ("llama: 1 request in flight", "llama: 2 requests in flight")


def test_state_file_keeps_the_counters(llama: LlamaServerRun, tmp_path: Path) -> None:
    config, path = config_for(llama), tmp_path / "idle.json"
    check(config, path, dry_run=True, boot_id=BOOT, now=0.0)
    counter = state.counters(json.loads(path.read_text()))["llama"]
    assert counter.work == 0 and counter.epoch  # Process-Start-Time-Unix
    assert check(config, path, dry_run=True, boot_id=BOOT, now=30.0) is Action.STAY_AWAKE


def test_real_llama_server_woken_through_the_proxy(tmp_path: Path, cleanup: list) -> None:
    port, wol_port = free_port(), free_port(socket.SOCK_DGRAM)
    nic = Process([sys.executable, str(WOL_LISTENER), "--port", str(wol_port), "--mac", MAC, "--",
                   *llama_command(port)], tmp_path / "llama-server.log")
    cleanup.append(nic)
    wait_for(lambda: "listening" in nic.text(), what="the wake listener")
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=wol_port,
                                           wake_timeout="5m"))
    cleanup.append(proxy)
    with socket.create_connection(proxy.address, timeout=300) as sock:
        sock.sendall(chat_request(stream=True, content="Say hi"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert b"data: " in response and b"[DONE]" in response
    assert "ready after" in proxy.log()
