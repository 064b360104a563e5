"""Against a real llama-server: what wakes it, what counts as use, and the proxy's wake path.

./run-tests builds llama-server from the llama-cpp-python sdist (cached in .cache/) and a tiny
random-weight model, and names them in LLAMA_SERVER and LLAMA_MODEL; other binaries and models can
be named the same way. Without them these tests are skipped, with that reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleepyllama import config as configuration
from sleepyllama.config import ServerConfig
from sleepyllama.host import state
from sleepyllama.host.idle import Action
from sleepyllama.host.idle_check import check, signals_for
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.servers import ServersSignal
from sleepyllama.host.supervisor import ready_status
from sleepyllama.host.suspend import SystemOps, sleep_now
from sleepyllama.kinds.llama_server import LlamaServerSource
from sleepyllama.proxy.probe import http

from conftest import (
    GET_HEALTH,
    MAC,
    WOL_LISTENER,
    NotifySocket,
    Process,
    ProxyRun,
    chat_request,
    free_port,
    http_request,
    proxy_table,
    sleepyllama_command,
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


def answers_health(port: int) -> bool:
    try:
        return http.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except OSError:
        return False


def router_command(port: int, models: Path, *extra: str) -> list[str]:
    """Router mode: no model on the command line, one child llama-server per loaded model."""
    return [BINARY, "--models-dir", str(models), "--host", "127.0.0.1", "--port", str(port),
            "-c", "512", "-np", "1", *extra]


class LlamaServerRun:
    def __init__(self, directory: Path, *extra: str, command: list[str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = command or llama_command(self.port, *extra)
        self.process = Process(self.command, directory / "llama-server.log")
        wait_for(self.healthy, timeout=60, what="llama-server to load its model")

    def healthy(self) -> bool:
        return answers_health(self.port)

    def sleeping(self) -> bool:
        return http.get(self.url + "/props", timeout=5).json()["is_sleeping"] is True

    def complete(self, text: str = "Say hi", model: str = "tiny", api_key: str = "none") -> str:
        from openai import OpenAI

        client = OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0)
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=8)
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
                               "gpu = \"off\"\ninhibitors = false\nsessions = false\n")


class NoSystem:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def ops(self) -> SystemOps:
        return SystemOps(stop_servers=lambda _timeout: self.calls.append("stop") or [],
                         start_servers=lambda: self.calls.append("start"),
                         sleep=self.calls.append,  # the action: "suspend"
                         arm_wake_on_lan=lambda _proxies: [], can_sleep=lambda _action: "yes")


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


def supervised(tmp_path: Path, command: list[str], idle: str = "") -> tuple[Process, NotifySocket,
                                                                           Path]:
    """sleepyllama-server over `command`, with the test as its notify socket, READY awaited."""
    config_file = tmp_path / "sleepyllama.toml"
    config_file.write_text("[server.llama]\ncommand = [" + ", ".join(json.dumps(a) for a in command)
                           + "]\n" + idle)
    notify = NotifySocket(tmp_path / "notify")
    supervisor = Process([sys.executable, "-m", "sleepyllama.host.supervisor", "--config",
                          str(config_file), "--instance", "llama"], tmp_path / "supervisor.log",
                         {**os.environ, "NOTIFY_SOCKET": str(notify.path)})
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=60, what="READY")
    except BaseException:
        supervisor.stop()
        notify.close()
        raise
    return supervisor, notify, config_file


def test_a_sleeping_model_stays_asleep_under_sleepyllama(tmp_path: Path) -> None:
    """llama-server under sleepyllama-server, with idle checks running: its own sleep
    (--sleep-idle-seconds) unloads the model and nothing of ours loads it again; it reads idle;
    then a request wakes it and is counted."""
    port = free_port()
    supervisor, notify, config_file = supervised(
        tmp_path, llama_command(port, "--metrics", "--sleep-idle-seconds", "3"),
        '[idle]\ntimeout = "1h"\ngpu = "off"\ninhibitors = false\nsessions = false\n')
    try:
        config, path = configuration.load(config_file), tmp_path / "idle.json"
        source = LlamaServerSource(f"http://127.0.0.1:{port}")
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


def test_status_shows_a_request_in_flight(tmp_path: Path, cleanup: list) -> None:
    """A CI run read "nothing in flight": its stream had ended. A slot of -c 512 -np 2 holds
    256 tokens, generated in well under a second, and a loaded machine read /metrics after
    that. With context shift the stream runs to max_tokens (tens of seconds): it is in flight
    until the client hangs up, and the signal is read while it is."""
    llama = LlamaServerRun(tmp_path, "--metrics", "--context-shift")
    cleanup.append(llama)
    server = ServerConfig("llama", tuple(llama_command(llama.port)), llama.url + "/health",
                          activity="llama-server")
    body = json.dumps({"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 100000,
                       "ignore_eos": True, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", llama.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.recv(1)  # streaming has begun
        reading = ServersSignal([server], {}).read()
    assert reading.activity is Activity.BUSY, reading
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


def server_config(command: list[str]) -> configuration.Config:
    arguments = ", ".join(json.dumps(arg) for arg in command)
    return configuration.parse(f"[server.llama]\ncommand = [{arguments}]\n[idle]\ntimeout = \"10m\"\n"
                               "gpu = \"off\"\ninhibitors = false\nsessions = false\n")


def model_states(server: LlamaServerRun, api_key: str = "") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    answer = http.get(server.url + "/models", headers=headers, timeout=5).json()
    return {model["id"]: model["status"]["value"] for model in answer["data"]}


@pytest.fixture
def router(tmp_path: Path) -> Iterator[LlamaServerRun]:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("alpha", "beta"):
        (models / f"{name}.gguf").symlink_to(MODEL)
    port = free_port()
    server = LlamaServerRun(tmp_path, command=router_command(port, models, "--metrics"), port=port)
    yield server
    server.stop()


def test_router_mode_sleeps_when_idle_and_no_look_loads_a_model(router: LlamaServerRun,
                                                                tmp_path: Path) -> None:
    """Router mode answers /metrics without ?model= with 400: read as it was, the box never
    slept. Read through /models and each loaded model, it is idle with nothing loaded, busy
    after a request, idle again after, and nothing sleepyllama sends loads a model."""
    config, path, system = server_config(router.command), tmp_path / "idle.json", NoSystem()
    assert model_states(router) == {"alpha": "unloaded", "beta": "unloaded"}
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=100.0)
    record = json.loads(path.read_text())
    assert record["idle_since"] == 100.0, record["reason"]
    assert "no model loaded (llama-server router)" in record["reason"]
    router.complete(model="alpha")
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=130.0)
    record = json.loads(path.read_text())
    assert record["idle_since"] is None, record["reason"]
    assert "since the last check" in record["reason"]
    check(config, path, dry_run=False, ops=system.ops(), boot_id=BOOT, now=160.0)
    record = json.loads(path.read_text())
    assert record["idle_since"] == 160.0, record["reason"]
    # the supervisor's frequent, gentle look and its STATUS line
    look = LlamaServerSource(router.url, read_slots=False).look()
    assert ready_status(look) == "ready · 1 of 2 models loaded · 0 requests in flight"
    assert model_states(router) == {"alpha": "loaded", "beta": "unloaded"}
    assert system.calls == []


def test_api_key_read_from_the_command_reaches_every_look(tmp_path: Path) -> None:
    """With --api-key only /health is public: /props and /metrics answered 401 and the box never
    slept. The key on the server's command (or in its --api-key-file) is sent with each look."""
    key_file = tmp_path / "key"
    key_file.write_text("sekrit-key\n")
    server = LlamaServerRun(tmp_path, "--metrics", "--api-key-file", str(key_file))
    try:
        config, path = server_config(server.command), tmp_path / "idle.json"
        check(config, path, dry_run=True, boot_id=BOOT, now=0.0)
        assert "first look" in json.loads(path.read_text())["reason"]
        server.complete(api_key="sekrit-key")
        assert check(config, path, dry_run=True, boot_id=BOOT, now=30.0) is Action.STAY_AWAKE
        assert "tokens since the last check" in json.loads(path.read_text())["reason"]
        check(config, path, dry_run=True, boot_id=BOOT, now=60.0)
        record = json.loads(path.read_text())
        assert record["idle_since"] == 60.0, record["reason"]
        assert "sekrit" not in path.read_text()
        # a config whose command lacks the key: unreadable, counted busy, and it says why
        keyless = [arg for arg in server.command if arg not in ("--api-key-file", str(key_file))]
        reading = ServersSignal([server_config(keyless).server("llama")], {}).read()
        assert reading.activity is Activity.UNKNOWN
        assert "answered 401" in reading.reason and "--api-key" in reading.reason
    finally:
        server.stop()


def test_with_api_key_the_cached_model_list_goes_only_to_clients_with_the_key(
        tmp_path: Path, cleanup: list) -> None:
    """llama-server --api-key answers /v1/models 401 without the key: the proxy fetches it with
    the key from api_key_file and answers it while asleep only to a client that presents it."""
    key_file = tmp_path / "llama.key"
    key_file.write_text("sekrit-key\n")
    key_file.chmod(0o600)
    port, wol_port = free_port(), free_port(socket.SOCK_DGRAM)
    command = llama_command(port, "--api-key", "sekrit-key", "--alias", "tiny")
    nic = Process([sys.executable, str(WOL_LISTENER), "--port", str(wol_port), "--mac", MAC, "--",
                   *command], tmp_path / "llama-server.log")
    cleanup.append(nic)
    wait_for(lambda: "listening" in nic.text(), what="the wake listener")
    state_directory = tmp_path / "state"
    state_directory.mkdir()
    table = proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=wol_port, wake_timeout="2m",
                        api_key_file=str(key_file))
    (tmp_path / "first").mkdir()
    first = ProxyRun(tmp_path / "first", table, state_directory=state_directory)
    try:
        health = http_request(first.address, GET_HEALTH, timeout=120)
        assert health.startswith(b"HTTP/1.1 200"), health[:200]
        answers = state_directory / "llama.answers.json"
        wait_for(lambda: answers.exists() and "/v1/models" in answers.read_text(), timeout=20,
                 what="the model list fetched with the key")
        assert "sekrit" not in answers.read_text() and "sekrit" not in first.log()
        # the page (sleepyllama-web) lists the models the real server's answer names
        from sleepyllama.dashboard import boxes

        shown = boxes.read_box(configuration.parse(table).proxy("llama"), state_directory)
        assert shown.models == ["tiny"], shown
        assert "sekrit" not in json.dumps(shown.as_json())
    finally:
        first.stop()
    subprocess.run(["pkill", "-f", f"^{BINARY} .*--port {port} "], check=True)
    wait_for(lambda: not answers_health(port), what="llama-server gone")
    packets = nic.text().count("packet ")
    (tmp_path / "second").mkdir()
    second = ProxyRun(tmp_path / "second", table, state_directory=state_directory)
    cleanup.append(second)

    def models(headers: str) -> bytes:
        return http_request(second.address, ("GET /v1/models HTTP/1.1\r\nHost: box\r\n"
                                             f"{headers}Connection: close\r\n\r\n").encode())

    answer = models("Authorization: Bearer sekrit-key\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b'"tiny"' in answer, answer[:300]
    assert b"x-sleepyllama: from-cache" in answer.lower()
    assert models("X-Api-Key: sekrit-key\r\n").startswith(b"HTTP/1.1 200")
    for refused in ("", "Authorization: Bearer wrong\r\n", "Authorization: Bearer sekrit-ke\r\n"):
        answer = models(refused)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b"tiny" not in answer
    # a chat without the key: the box would answer 401 after waking, so the proxy does, at once
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    chat = http_request(second.address, b"POST /v1/chat/completions HTTP/1.1\r\nHost: box\r\n"
                        b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (len(body), body))
    assert chat.startswith(b"HTTP/1.1 401") and b"Invalid API Key" in chat, chat[:300]
    assert nic.text().count("packet ") == packets, "looking, or a refused chat, woke the box"
    assert "sekrit" not in second.log()


def test_check_names_a_missing_or_refused_api_key(tmp_path: Path) -> None:
    server = LlamaServerRun(tmp_path, "--api-key", "sekrit-key")
    try:
        config = tmp_path / "sleepyllama.toml"
        backend = f"127.0.0.1:{server.port}"

        def check_lines(*extra: str) -> list[str]:
            config.write_text(proxy_table(None, backend=backend, **dict(
                item.split("=", 1) for item in extra)))
            return sleepyllama_command(config, "check").stdout.splitlines()

        without = check_lines()
        assert any(line.startswith("warning: [proxy.llama]: the backend wants an API key")
                   for line in without), without
        wrong = tmp_path / "wrong.key"
        wrong.write_text("not-the-key\n")
        refused = check_lines(f"api_key_file={wrong}")
        assert f"error: [proxy.llama] api_key_file: the backend refuses the key in {wrong} " \
               "(GET /v1/models answered 401)" in refused, refused
        right = tmp_path / "right.key"
        right.write_text("sekrit-key\n")
        good = check_lines(f"api_key_file={right}")
        assert not any("API key" in line or "api_key_file" in line for line in good), good
    finally:
        server.stop()


def test_a_short_request_past_a_million_tokens_is_still_seen(tmp_path: Path) -> None:
    """/metrics prints its counters with 6 significant digits: past 1e6 prompt tokens an
    8-token embedding can leave every token counter as it was (measured by a reporter: 4 of 20).
    Each look keeps a fingerprint of every counter, whose seconds and decode counts move."""
    port = free_port()
    command = [BINARY, "-m", MODEL, "--host", "127.0.0.1", "--port", str(port), "-c", "2048",
               "-np", "1", "-b", "2048", "-ub", "2048", "--metrics", "--embeddings",
               "--pooling", "mean"]
    server = LlamaServerRun(tmp_path, command=command, port=port)
    try:
        filler = "a " * 2000  # 2004 tokens of the tiny model's vocabulary
        for number in range(530):  # past 1.06e6 prompt tokens
            answer = http.post(f"{server.url}/completion", timeout=60, json={
                "prompt": f"{number} {filler}", "n_predict": 1, "cache_prompt": False})
            assert answer.status_code == 200, answer.text[:200]
        metrics = http.get(f"{server.url}/metrics", timeout=5).text
        assert "llamacpp:prompt_tokens_total 1.06" in metrics and "e+06" in metrics, metrics[:500]
        config, path = server_config(command), tmp_path / "idle.json"
        check(config, path, dry_run=True, boot_id=BOOT, now=0.0)
        unseen = []
        for number in range(10):
            answer = http.post(f"{server.url}/v1/embeddings", timeout=60,
                               json={"input": f"hello {number}"})
            assert answer.status_code == 200, answer.text[:200]
            check(config, path, dry_run=True, boot_id=BOOT, now=30.0 * (number + 1))
            record = json.loads(path.read_text())
            if record["idle_since"] is not None:
                unseen.append(record["reason"])
        assert unseen == [], unseen
    finally:
        server.stop()


def test_asked_for_the_gpu_and_running_on_the_cpu_is_ready_but_says_so(tmp_path: Path) -> None:
    """The CPU build here prints what a GPU build prints when CUDA fails to initialize: given
    -ngl, "no usable GPU found, --gpu-layers option will be ignored". It answers, so it is
    READY; its STATUS names the CPU, as after a resume whose CUDA did not come back."""
    supervisor, notify, _config = supervised(tmp_path, llama_command(free_port(), "--metrics",
                                                                      "-ngl", "99"))
    try:
        wait_for(lambda: any(s.startswith("ready on the CPU: no usable GPU found")
                             for s in notify.statuses()), what="the CPU named in STATUS")
        assert "llama is ready on the CPU" in supervisor.text()
    finally:
        supervisor.stop()
        notify.close()
    assert "--gpu-layers option will be ignored" in supervisor.text()  # the server's own line


KEY_HEADERS = [
    [("Authorization", "Bearer sekrit-key")], [("Authorization", "sekrit-key")],
    [("Authorization", "bearer sekrit-key")], [("Authorization", "Bearer  sekrit-key")],
    [("Authorization", "Basic sekrit-key")], [("X-Api-Key", "sekrit-key")],
    [("x-api-key", "Bearer sekrit-key")], [("Api-Key", "sekrit-key")], [],
    [("Authorization", "Bearer wrong"), ("X-Api-Key", "sekrit-key")],
    [("X-Api-Key", "wrong"), ("Authorization", "Bearer sekrit-key")],
    [("Authorization", ""), ("X-Api-Key", "sekrit-key")],
]


def test_the_proxy_reads_a_clients_key_exactly_as_llama_server_does(tmp_path: Path) -> None:
    """Each mix of key headers: the real server's 200 or 401 on /v1/models, and the proxy's own
    judgement (which decides whether a kept model list goes to that client), agree."""
    import http.client

    import h11

    from sleepyllama.proxy import api_key

    server = LlamaServerRun(tmp_path, "--api-key", "sekrit-key")
    disagree = []
    try:
        for headers in KEY_HEADERS:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            connection.putrequest("GET", "/v1/models", skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders()
            status = connection.getresponse().status
            connection.close()
            # the headers as the proxy's h11 hands them over: names lowercased, values trimmed
            parsed = h11.Request(method="GET", target="/v1/models",
                                 headers=[("Host", "x"), *headers]).headers
            ours = api_key.matches("sekrit-key", api_key.presented(list(parsed)))
            if (status == 200) != ours:
                disagree.append((headers, status, ours))
    finally:
        server.stop()
    assert disagree == [], disagree
