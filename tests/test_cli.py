"""The sleepyllama command a person types, run as a program against real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import MAC, SleepingBackend, free_port, proxy_table


def sleepyllama(config: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sleepyllama.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_wake_sends_packets_and_waits_until_ready(tmp_path: Path, cleanup: list) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=1.0)
    cleanup.append(backend)
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(backend, wol_interval="0.5s"))
    result = sleepyllama(config, "wake", "llama")
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{backend.port} is ready after" in result.stderr
    assert f"sent magic packet for {MAC}" in result.stderr
    assert len(backend.packets()) >= 2  # the first packet, and more while the model loaded


def test_wake_gives_up_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(None, backend=f"127.0.0.1:{free_port()}", wol_port=free_port()))
    result = sleepyllama(config, "wake", "--timeout", "1s")
    assert result.returncode == 1
    assert "did not wake within 1s (last answer: Connection refused)" in result.stderr


def test_check_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[server.llama]\ncommand = ["/no/such/llama-server"]\n')
    result = sleepyllama(config, "check", env={"PATH": str(tmp_path)})  # no nvidia-smi on PATH
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "error: [server.llama] command: /no/such/llama-server is not an executable file" in lines
    assert any(line.startswith('error: [idle] gpu = "pstate": nvidia-smi not found') for line in lines)
    assert lines[-1].startswith(f"{sum(line.startswith('error:') for line in lines)} error(s)")


def test_status_json_reports_even_without_systemd(tmp_path: Path, cleanup: list) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(backend))
    report = json.loads(sleepyllama(config, "status", "--json",
                                    env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}).stdout)
    assert report["proxies"] == [{"name": "llama", "backend": f"127.0.0.1:{backend.port}",
                                  "ready": False, "answer": "Connection refused"}]
    assert "systemd_error" in report or report["units"]


def test_config_errors_exit_78_and_help_has_examples(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text("[idle]\ntimeout = \"forever\"\n")
    result = sleepyllama(config, "status")
    assert result.returncode == 78 and "[idle] timeout:" in result.stderr
    for command in ("status", "wake", "sleep-now", "check"):
        help_text = sleepyllama(config, command, "--help").stdout
        assert "examples:" in help_text and f"sleepyllama {command}" in help_text.replace(
            "sudo ", "")


def test_check_says_what_each_server_kind_cannot_show(tmp_path: Path) -> None:
    executable = tmp_path / "llama-server"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    whisper = tmp_path / "whisper-server"
    whisper.write_text("#!/bin/sh\n")
    whisper.chmod(0o755)
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "-m", "m.gguf"]\n'
                      f'[server.whisper]\ncommand = ["{whisper}"]\n[idle]\ngpu = "off"\n')
    lines = sleepyllama(config, "check").stdout.splitlines()
    assert any(line.startswith("warning: [server.llama]: llama-server runs without --metrics")
               and "--sleep-idle-seconds" in line for line in lines), lines
    assert any(line.startswith('warning: [server.whisper] activity = "none": no request is seen')
               for line in lines), lines
    assert any("[server.whisper] shows no requests and [idle] gpu = \"off\"" in line
               for line in lines), lines
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "--metrics", "--host", "0.0.0.0"]'
                      '\n[idle]\ngpu = "off"\n')
    lines = sleepyllama(config, "check").stdout.splitlines()
    assert "ok: [server.llama]: requests counted from /metrics, model sleep from /props" in lines
    assert not any("[server.llama]" in line for line in lines if line.startswith("warning"))


def test_check_finds_missing_model_files_and_loopback_only_servers(tmp_path: Path) -> None:
    executable = tmp_path / "llama-server"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    model = tmp_path / "here.gguf"
    model.write_text("")
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "-m", "/models/nope.gguf", '
                      f'"--mmproj", "{model}", "--metrics", "--host", "127.0.0.1"]\n'
                      '[idle]\ngpu = "off"\n')
    result = sleepyllama(config, "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert ("error: [server.llama] command: -m /models/nope.gguf: no such file (the server would "
            "fail at each start)") in lines
    assert not any(str(model) in line for line in lines)
    assert any(line.startswith("warning: [server.llama] listens on 127.0.0.1 only") and
               "--host 0.0.0.0" in line for line in lines), lines


def test_wake_on_the_gpu_box_says_where_it_runs(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[server.llama]\ncommand = ["llama-server"]\n')
    result = sleepyllama(config, "wake")
    assert result.returncode == 78
    assert "sleepyllama wake runs on the always-on host" in result.stderr
    assert "--instance" not in result.stderr


def test_status_with_a_config_error_still_shows_the_units(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "c6:d9:42:9c:af"\n')
    result = sleepyllama(config, "status", "--json",
                         env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert result.returncode == 78
    report = json.loads(result.stdout)
    assert "[proxy.llama] mac: expected a MAC address" in report["config_error"]
    assert "units" in report and ("systemd_error" in report or report["units"] is not None)
