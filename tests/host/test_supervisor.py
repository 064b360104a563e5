"""sleepyllama-server supervising a fake llama-server, with the test as systemd's notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sleepyllama.host.supervisor import why_it_died
from sleepyllama.proxy.probe import http

from conftest import FAKE_SERVER, TESTS, NotifySocket, free_port, wait_for


def write_config(tmp_path: Path, command: list[str], **keys: str) -> Path:
    config = tmp_path / "sleepyllama.toml"
    args = ", ".join(f'"{arg}"' for arg in command)
    extra = "".join(f'{key} = "{value}"\n' for key, value in keys.items())
    config.write_text(f"[server.llama]\ncommand = [{args}]\n{extra}")
    return config


def supervise(tmp_path: Path, config: Path, **env: str) -> tuple[subprocess.Popen, NotifySocket]:
    notify = NotifySocket(tmp_path / "notify")
    process = subprocess.Popen(
        [sys.executable, "-m", "sleepyllama.host.supervisor", "--config", str(config), "--instance", "llama"],
        env={**os.environ, "NOTIFY_SOCKET": str(notify.path), **env})
    return process, notify


def fake_server(port: int, *extra: str) -> list[str]:
    return [sys.executable, str(FAKE_SERVER), "--host", "127.0.0.1", "--port", str(port), *extra]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_ready_only_once_health_answers_200_and_status_follows_requests(tmp_path: Path) -> None:
    port = free_port()
    ready_file = tmp_path / "ready"
    config = write_config(tmp_path, fake_server(port, "--load-seconds", "1.5", "-np", "4",
                                                "--tokens", "20", "--token-delay", "0.2",
                                                "--ready-file", str(ready_file), "--metrics"),
                          activity="llama-server")
    process, notify = supervise(tmp_path, config, WATCHDOG_USEC="400000")
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=20, what="READY=1")
        ready_received = time.monotonic()
        assert ready_received >= float(ready_file.read_text()), "READY=1 came before /health was 200"
        statuses = notify.statuses()
        assert "loading model" in statuses
        assert statuses[-1] == "ready · 0 requests in flight"
        # pinged while loading too: a server that answers 503 is alive, not hung
        assert notify.messages.index("WATCHDOG=1") < next(
            i for i, m in enumerate(notify.messages) if "READY=1" in m)
        # a request in flight shows in STATUS
        with socket.create_connection(("127.0.0.1", port)) as sock:
            body = b'{"stream": true, "messages": []}'
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                         b"\r\n\r\n%s" % (len(body), body))
            wait_for(lambda: "ready · 1 request in flight" in notify.statuses(), what="busy status")
    finally:
        process.terminate()
        process.wait(10)
        notify.close()


def test_without_metrics_the_supervisor_never_reads_slots(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, fake_server(port), activity="llama-server")
    process, notify = supervise(tmp_path, config)
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=20, what="READY=1")

        def asked() -> dict:
            return http.get(f"http://127.0.0.1:{port}/fake/requests", timeout=5).json()

        looked = asked().get("/metrics", 0)
        # a whole look once ready, waited for rather than slept through: the look after it has
        # begun (looks are one after the other), so whatever the first read, it has read
        wait_for(lambda: asked().get("/metrics", 0) >= looked + 2, timeout=15,
                 what="two more of the supervisor's looks at /metrics after READY")
        wait_for(lambda: notify.statuses()[-1] == "ready", what='STATUS "ready"')
        assert asked().get("/props", 0) >= 1
        assert "/slots" not in asked()
    finally:
        process.terminate()
        process.wait(10)
        notify.close()


def test_sigterm_stops_the_server_and_its_whole_group(tmp_path: Path) -> None:
    port = free_port()
    pids = tmp_path / "pids"
    # a server that forks a helper, as llama-server's CUDA helpers do
    script = (f"import subprocess, sys, os; h = subprocess.Popen(['sleep', '300']); "
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{h.pid}}'); "
              f"os.execv(sys.executable, {fake_server(port)!r})")
    config = write_config(tmp_path, [sys.executable, "-c", script],
                          health_url=f"http://127.0.0.1:{port}/health")
    process, notify = supervise(tmp_path, config)
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=20, what="READY=1")
        server_pid, helper_pid = map(int, pids.read_text().split())
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert any("STOPPING=1" in m for m in notify.messages)
        wait_for(lambda: not pid_alive(server_pid), what="the server to exit")
        wait_for(lambda: not pid_alive(helper_pid), what="the helper to be stopped with the group")
    finally:
        notify.close()


def test_a_server_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (f"import signal, subprocess, os, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              f"h = subprocess.Popen(['python3', '-c', 'import signal, time; "
              f"signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']); "
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{h.pid}}'); time.sleep(300)")
    config = write_config(tmp_path, [sys.executable, "-c", script], stop_timeout="1s")
    process, notify = supervise(tmp_path, config)
    try:
        wait_for(lambda: pids.exists() and pids.read_text(), what="the stubborn server")
        server_pid, helper_pid = map(int, pids.read_text().split())
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert not pid_alive(server_pid) and not pid_alive(helper_pid)
    finally:
        notify.close()


@pytest.mark.parametrize(("script", "status"), [
    ("raise SystemExit(3)", 3),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),
    ("pass", 1),  # exiting unasked with 0 is still a failure: systemd must restart it
])
def test_a_server_that_dies_makes_the_wrapper_fail(tmp_path: Path, script: str, status: int) -> None:
    process, notify = supervise(tmp_path, write_config(tmp_path, [sys.executable, "-c", script]))
    try:
        assert process.wait(20) == status
        assert not any("READY=1" in m for m in notify.messages)
    finally:
        notify.close()


def test_config_error_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server.llama]\ncommand = "llama-server -m x.gguf"\n')
    result = subprocess.run([sys.executable, "-m", "sleepyllama.host.supervisor", "--config", str(config),
                             "--instance", "llama"], capture_output=True, text=True)
    assert result.returncode == 78
    assert "[server.llama] command: must be a list of arguments" in result.stderr


def test_why_it_died_from_real_llama_server_output() -> None:
    output = (TESTS / "data" / "llama-server" / "output-missing-model.txt").read_text()
    why = why_it_died(output.splitlines())
    assert "failed to open GGUF file '/models/nope.gguf' (No such file or directory)" in why
    assert why.endswith("llama_server: exiting due to model loading error")
    assert why.count(" | ") == 2 and "0.00." not in why  # three lines, llama.cpp's clock dropped
    assert why_it_died(["starting", "", "bye"]) == "starting | bye"  # no error line: the last ones


def test_a_dying_server_says_why_and_its_output_reaches_the_journal(tmp_path: Path) -> None:
    script = ("import sys; print('loading the model'); "
              "print('error: cannot open /models/x.gguf', file=sys.stderr); sys.exit(1)")
    config = write_config(tmp_path, [sys.executable, "-c", script])
    notify = NotifySocket(tmp_path / "notify")
    result = subprocess.run([sys.executable, "-m", "sleepyllama.host.supervisor", "--config",
                             str(config), "--instance", "llama"], capture_output=True, text=True,
                            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)}, timeout=30)
    wait_for(lambda: any(s.startswith("exited") for s in notify.statuses()), what="STATUS")
    notify.close()
    assert result.returncode == 1
    assert "loading the model\nerror: cannot open /models/x.gguf\n" in result.stderr  # passed on
    assert "llama exited unasked (status 1): error: cannot open /models/x.gguf" in result.stderr
    assert notify.statuses()[-1] == "exited unasked (status 1): error: cannot open /models/x.gguf"


def test_a_port_another_server_holds_is_named_not_taken_for_ours(tmp_path: Path) -> None:
    """A second server on a port already used: the supervisor saw the first one's /health 200
    and called READY for a server that never started."""
    port = free_port()
    first = subprocess.Popen(fake_server(port), stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/health"],
                                        capture_output=True).returncode == 0, what="the first")
        config = write_config(tmp_path, fake_server(port, "--api-key", "sekrit"),
                              health_url=f"http://127.0.0.1:{port}/health")
        process, notify = supervise(tmp_path, config)
        try:
            assert process.wait(30) == 1
            assert not any("READY=1" in message for message in notify.messages)
            assert any("another server holds its port" in s for s in notify.statuses())
        finally:
            notify.close()
    finally:
        first.terminate()
        first.wait(10)


def test_an_api_key_on_the_command_is_never_logged(tmp_path: Path) -> None:
    from sleepyllama.kinds.base import redacted

    assert redacted(["llama-server", "--api-key", "k1", "--port", "8080", "--api-key=k2"]) == [
        "llama-server", "--api-key", "***", "--port", "8080", "--api-key=***"]
    port = free_port()
    config = write_config(tmp_path, fake_server(port, "--api-key", "sekrit-key"))
    process = subprocess.Popen(
        [sys.executable, "-m", "sleepyllama.host.supervisor", "--config", str(config),
         "--instance", "llama"], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/health"],
                                        capture_output=True).returncode == 0, what="the server")
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=30)
    assert "starting llama:" in err and "--api-key ***" in err
    assert "sekrit" not in err


class Recorder:
    """A Notifier that keeps what it was told, with the time, and stops the supervisor (as
    systemctl stop would) once it is READY, or after `give_up` seconds."""

    def __init__(self, give_up: float) -> None:
        self.ready_at: float | None = None
        self.statuses: list[str] = []
        self.timer = threading.Timer(give_up, lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.timer.start()

    def ready(self, status: str = "") -> None:
        self.ready_at = time.monotonic()
        self.timer.cancel()
        os.kill(os.getpid(), signal.SIGTERM)

    def status(self, status: str) -> None:
        self.statuses.append(status)

    def stopping(self, status: str = "") -> None:
        pass

    def watchdog(self) -> None:
        pass


def test_ready_follows_the_servers_own_ready_line_not_the_next_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With polls 30 s apart, READY could only come from the server's "listening on" line: the
    model loads in 1 s, and the test gives up after 20 s."""
    from sleepyllama import config as configuration
    from sleepyllama.host import supervisor

    monkeypatch.setattr(supervisor, "LOADING_POLL", 30.0)
    port, ready_file = free_port(), tmp_path / "ready"
    config = configuration.load(write_config(
        tmp_path, fake_server(port, "--load-seconds", "1", "--metrics", "--ready-file",
                              str(ready_file)), activity="llama-server"))
    recorder = Recorder(give_up=20.0)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.Supervisor(config.server("llama"), recorder).run()  # type: ignore[arg-type]
    finally:
        recorder.timer.cancel()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert recorder.ready_at is not None, f"no READY before the give-up: {recorder.statuses}"
    assert recorder.ready_at >= float(ready_file.read_text()), "READY before /health was 200"
    print(f"\nREADY {1000 * (recorder.ready_at - float(ready_file.read_text())):.1f} ms after "
          "/health turned 200")
