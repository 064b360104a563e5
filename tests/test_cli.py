"""The sleepyllama command a person types, run as a program against real sockets."""

from __future__ import annotations

from pathlib import Path

from conftest import MAC, SleepingBackend, free_port, proxy_table, sleepyllama_command


def test_wake_sends_packets_and_waits_until_ready(tmp_path: Path, cleanup: list) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=1.0)
    cleanup.append(backend)
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(backend, wol_interval="0.5s"))
    result = sleepyllama_command(config, "wake", "llama")
    assert result.returncode == 0, result.stderr
    assert f"127.0.0.1:{backend.port} is ready after" in result.stderr
    assert f"sent magic packet for {MAC}" in result.stderr
    assert len(backend.packets()) >= 2  # the first packet, and more while the model loaded


def test_wake_gives_up_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(None, backend=f"127.0.0.1:{free_port()}", wol_port=free_port()))
    result = sleepyllama_command(config, "wake", "--timeout", "1s")
    assert result.returncode == 1
    assert "did not wake within 1s (last answer: Connection refused)" in result.stderr
    # refused comes from the box's own kernel: it is up, and the port is wrong
    assert "answers, but nothing listens on port" in result.stderr


def test_config_errors_exit_78_and_help_has_examples(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text("[idle]\ntimeout = \"forever\"\n")
    result = sleepyllama_command(config, "status")
    assert result.returncode == 78 and "[idle] timeout:" in result.stderr
    for command in ("status", "wake", "sleep-now", "check", "restart"):
        help_text = sleepyllama_command(config, command, "--help").stdout
        assert "examples:" in help_text and f"sleepyllama {command}" in help_text.replace(
            "sudo ", "")


def test_wake_on_the_gpu_box_says_where_it_runs(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[server.llama]\ncommand = ["llama-server"]\n')
    result = sleepyllama_command(config, "wake")
    assert result.returncode == 78
    assert "sleepyllama wake runs on the always-on host" in result.stderr
    assert "--instance" not in result.stderr


def test_every_command_takes_its_options_on_either_side(tmp_path: Path) -> None:
    """`sleepyllama check --config FILE` (the option after the command, as people type it) was
    refused."""
    import subprocess
    import sys

    config = tmp_path / "sleepyllama.toml"
    config.write_text("[idle]\ntimeout = \"forever\"\n")
    after = subprocess.run([sys.executable, "-m", "sleepyllama.cli", "check", "--config",
                            str(config)], capture_output=True, text=True, timeout=60)
    assert after.returncode == 78 and str(config) in after.stderr, after.stderr


def test_sleep_now_looks_with_what_the_last_idle_check_left(monkeypatch) -> None:
    """sleep-now handed the signals the servers' counters where the whole record belongs, so
    they lost the last check's moment: requests since then could go unseen."""
    from sleepyllama import cli, config
    from sleepyllama.host import idle_check, state, suspend

    record = {"checked_at": 1_800_000_000.0, "counters": {}}
    seen: list[dict] = []
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(state, "load", lambda _path: (None, record))
    monkeypatch.setattr(idle_check, "signals_for", lambda _config, given: seen.append(given) or [])
    monkeypatch.setattr(suspend, "sleep_now", lambda *_args: suspend.Outcome(False, "test"))
    cli.sleep_now_command(config.parse(""), force=False)
    assert seen == [record]


def test_a_server_runs_its_command_as_the_kernel_shows_it() -> None:
    from sleepyllama.cli import runs

    command = ("llama-server", "-m", "/models/a.gguf")
    assert runs(command, ("/usr/local/bin/llama-server", "-m", "/models/a.gguf"))
    assert runs(("/opt/fake/llama-server", "--port", "8080"),
                ("/usr/bin/python3", "/opt/fake/llama-server", "--port", "8080"))  # a script
    assert not runs(command, ("/usr/local/bin/llama-server", "-m", "/models/b.gguf"))
    assert not runs(command, None) and not runs(command, ("-m",))


def test_history_shows_what_learned_pre_wakes_would_do_while_they_are_off(tmp_path, monkeypatch,
                                                                          utc) -> None:
    import json as json_module

    from test_learned import MONDAY, at, weekday_mornings

    from sleepyllama import cli, config, history, ledger

    monkeypatch.setattr(history, "PROXY_STATE", tmp_path)
    (tmp_path / "llama.ledger.jsonl").write_text("".join(
        json_module.dumps(ledger.to_json(entry, "b")) + "\n"
        for entry in weekday_mornings(3)))
    base = '[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
    now = at(MONDAY, "06:00")
    off = cli.learned_prewakes(config.parse(base), now, [])
    assert off[0]["mode"] == "off" and off[0]["learned"] == ["weekdays about 08:30"]
    assert off[0]["summary"] == (
        'pre-wakes of llama are off; prewake = "learned" would wake the box for weekdays '
        "about 08:30; the next would be Mon 08:27")
    on = cli.learned_prewakes(config.parse(base + 'prewake = "learned"\n'), now, [])
    assert on[0]["summary"] == ("pre-wakes of llama, learned: weekdays about 08:30; "
                                "the next Mon 08:27")
    assert on[0]["next"] == round(at(MONDAY, "08:30") - 20 - 120)
    (tmp_path / "llama.ledger.jsonl").write_text("")
    assert "nothing learned yet" in cli.learned_prewakes(config.parse(base), now, [])[0]["summary"]
