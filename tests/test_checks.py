"""sleepyllama check, run as a person runs it: every problem listed, each with its fix."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from conftest import sleepyllama_command


def test_check_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[server.llama]\ncommand = ["/no/such/llama-server"]\n')
    result = sleepyllama_command(config, "check", env={"PATH": str(tmp_path)})  # no nvidia-smi on PATH
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "error: [server.llama] command: /no/such/llama-server is not an executable file" in lines
    assert any(line.startswith('error: [idle] gpu = "pstate": nvidia-smi not found') for line in lines)
    assert lines[-1].startswith(f"{sum(line.startswith('error:') for line in lines)} error(s)")


def program(tmp_path: Path, name: str) -> Path:
    """An executable file with a server's name: check looks at names and paths, never runs it."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_check_says_what_each_server_kind_cannot_show(tmp_path: Path) -> None:
    executable, whisper = program(tmp_path, "llama-server"), program(tmp_path, "whisper-server")
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "-m", "m.gguf"]\n'
                      f'[server.whisper]\ncommand = ["{whisper}"]\n[idle]\ngpu = "off"\n')
    lines = sleepyllama_command(config, "check").stdout.splitlines()
    assert any(line.startswith("warning: [server.llama]: llama-server runs without --metrics")
               and "--sleep-idle-seconds" in line for line in lines), lines
    assert any(line.startswith('warning: [server.whisper] activity = "none": no request is seen')
               for line in lines), lines
    assert any("[server.whisper] shows no requests and [idle] gpu = \"off\"" in line
               for line in lines), lines
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "--metrics", "--host", "0.0.0.0"]'
                      '\n[idle]\ngpu = "off"\n')
    lines = sleepyllama_command(config, "check").stdout.splitlines()
    assert any(line.startswith("ok: [server.llama]: requests counted from /metrics, model sleep "
                               "from /props") for line in lines), lines
    assert not any("[server.llama]" in line for line in lines if line.startswith("warning"))


def test_check_finds_missing_model_files_and_loopback_only_servers(tmp_path: Path) -> None:
    executable = program(tmp_path, "llama-server")
    model = tmp_path / "here.gguf"
    model.write_text("")
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.llama]\ncommand = ["{executable}", "-m", "/models/nope.gguf", '
                      f'"--mmproj", "{model}", "--metrics", "--host", "127.0.0.1"]\n'
                      '[idle]\ngpu = "off"\n')
    result = sleepyllama_command(config, "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert ("error: [server.llama] command: -m /models/nope.gguf: no such file (the server would "
            "fail at each start)") in lines
    assert not any(str(model) in line for line in lines)
    assert any(line.startswith("warning: [server.llama] listens on 127.0.0.1 only") and
               "--host 0.0.0.0" in line for line in lines), lines


def test_check_tries_the_backend_and_names_a_wrong_port(tmp_path: Path) -> None:
    from conftest import free_port, proxy_table

    config = tmp_path / "sleepyllama.toml"
    port = free_port()
    config.write_text(proxy_table(None, backend=f"127.0.0.1:{port}"))
    lines = sleepyllama_command(config, "check").stdout.splitlines()
    assert (f"error: [proxy.llama] backend: the box at 127.0.0.1 answers, but nothing listens on "
            f"port {port}: a wrong port, or a server listening on 127.0.0.1 only (give it --host "
            "0.0.0.0)?") in lines, lines


def test_check_names_two_servers_on_one_port(tmp_path: Path) -> None:
    one, two = program(tmp_path, "llama-server"), program(tmp_path, "whisper-server")
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.a]\ncommand = ["{one}", "--metrics", "--port", "8080"]\n'
                      f'[server.b]\ncommand = ["{two}"]\nhealth_url = "http://127.0.0.1:8080/health"\n'
                      '[idle]\ngpu = "off"\n')
    lines = sleepyllama_command(config, "check").stdout.splitlines()
    assert ("error: [server.b] and [server.a] both listen on 127.0.0.1:8080: give one of them "
            "another --port") in lines, lines


def test_check_shows_each_cards_mac_and_a_missing_rtc_alarm(tmp_path: Path) -> None:
    from sleepyllama.checks import Findings, check_rtc, network_cards

    net = tmp_path / "net"
    for card, mac in (("lo", "00:00:00:00:00:00"), ("enp3s0", "ab:cd:ef:01:23:45")):
        (net / card).mkdir(parents=True)
        (net / card / "address").write_text(mac + "\n")
    assert network_cards(net) == {"enp3s0": "ab:cd:ef:01:23:45"}
    found = Findings()
    check_rtc(found, tmp_path / "no-rtc" / "wakealarm")
    assert found.warnings and "no RTC wake alarm" in found.warnings[0]


@pytest.mark.root
def test_check_names_a_program_that_holds_a_servers_port(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ss names another user's process only to root")
    executable = program(tmp_path, "llama-server")
    with socket.socket() as other:  # Ollama's own ollama.service, a hand-started llama-server
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = tmp_path / "sleepyllama.toml"
        config.write_text(f'[server.llama]\ncommand = ["{executable}", "--metrics", "--port", '
                          f'"{port}"]\n[idle]\ngpu = "off"\n')
        result = sleepyllama_command(config, "check")
    lines = [line for line in result.stdout.splitlines() if f"port {port}" in line]
    assert lines and lines[0].startswith(f"error: [server.llama] port {port} is held by python"), (
        result.stdout)
    assert f"(pid {os.getpid()})" in lines[0] and "give the server another --port" in lines[0]


def test_ollama_listens_where_ollama_host_says_as_its_unit_has_it() -> None:
    """`ollama serve` listens on 127.0.0.1 unless OLLAMA_HOST says otherwise: check said
    nothing, and the proxy's advice (--host 0.0.0.0) does not apply to Ollama."""
    from sleepyllama import config
    from sleepyllama.checks import Findings, check_reachable
    from sleepyllama.kinds.ollama import ollama_host

    # as Ollama's envconfig.Host() reads it
    assert ollama_host("") == ("127.0.0.1", "11434")
    assert ollama_host("0.0.0.0") == ("0.0.0.0", "11434")
    assert ollama_host('"0.0.0.0:11500"') == ("0.0.0.0", "11500")
    assert ollama_host(":11434") == ("0.0.0.0", "11434")  # every address, as Go listens
    assert ollama_host("http://192.168.1.50") == ("192.168.1.50", "80")
    assert ollama_host("[::1]:11434") == ("::1", "11434") and ollama_host("::1") == ("::1", "11434")
    server = config.parse('[server.ollama]\ncommand = ["/usr/local/bin/ollama", "serve"]\n'
                          ).server("ollama")
    found = Findings()
    check_reachable(server, config.parse("[idle]\n"), found, environment={})
    assert found.warnings == [
        "[server.ollama] listens on 127.0.0.1 only: a proxy on the always-on host cannot reach "
        "it; set OLLAMA_HOST=0.0.0.0:11434 in its unit's environment (install.sh does: "
        "Environment= in a drop-in, sudo systemctl edit sleepyllama-server@NAME)"]
    everywhere = Findings()
    check_reachable(server, config.parse("[idle]\n"), everywhere,
                    environment={"OLLAMA_HOST": "0.0.0.0:11434"})
    assert everywhere.warnings == []
    # a kind whose address is not known is not guessed at
    other = config.parse('[server.w]\ncommand = ["/opt/whisper-server"]\n').server("w")
    nothing = Findings()
    check_reachable(other, config.parse("[idle]\n"), nothing, environment={})
    assert nothing.warnings == []


def test_a_key_file_only_root_may_read_is_not_an_error_for_a_user(tmp_path: Path) -> None:
    """As install.sh sets it up, the key is root's alone (the proxy gets it as a credential):
    `sleepyllama check` run by a user called that correct setup an error."""
    import tempfile

    from conftest import as_nobody, require_another_user

    require_another_user()
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:  # pytest's tmp_path is root's only
        place = Path(directory)
        place.chmod(0o755)
        key = place / "llama.key"
        key.write_text("sekrit\n")
        key.chmod(0o600)
        config = place / "sleepyllama.toml"
        config.write_text('[proxy.llama]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                          f'api_key_file = "{key}"\n')
        config.chmod(0o644)
        code = ("import sys; from pathlib import Path; from sleepyllama import config, checks; "
                "found = checks.Findings(); "
                "checks.check_backend_key(config.load(Path(sys.argv[1])).proxy('llama'), found); "
                "print(found.errors, found.warnings)")
        result = as_nobody("-c", code, str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[] [") and "readable by root only, as it should be" in (
        result.stdout), result.stdout


def test_check_names_a_desktop_that_keeps_the_box_up_for_ever() -> None:
    from sleepyllama.checks import Findings, check_sessions
    from sleepyllama.systemd import Session

    found = Findings()
    check_sessions(found, lambda: [
        Session("3", "ann", "x11", "user", "active", tty="tty7"),
        Session("4", "bob", "tty", "user", "active", tty="pts/0", idle_since=1.0),
        Session("7", "root", "unspecified", "user", "active", service="cron")])
    assert len(found.warnings) == 1 and "ann is logged in at a x11 desktop (session 3)" in (
        found.warnings[0]) and "[idle] sessions = false" in found.warnings[0]


def test_check_says_what_the_page_needs_for_home_assistant(tmp_path) -> None:
    """Found by trying it: an unreadable [mqtt] password_file killed the page; check said
    nothing of it, nor that MQTT travels in clear."""
    import os

    from sleepyllama import config
    from sleepyllama.checks import Findings, check_mqtt

    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o600)
    tmp_path.chmod(0o755)
    proxy = '[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
    parsed = config.parse(proxy + f'[mqtt]\nbroker = "10.0.0.9:1883"\nusername = "ha"\n'
                                  f'password_file = "{secret}"\n')
    found = Findings()
    check_mqtt(parsed, found, tmp_path / "no-drop-ins")
    assert len(found.errors) == 1 and "cannot read it" in found.errors[0], found.errors
    assert "in clear" in found.good[0]
    # the credential install.sh passes is what the page reads: nothing to say of the file then
    drop_ins = tmp_path / "web.service.d"
    drop_ins.mkdir()
    (drop_ins / "mqtt.conf").write_text("[Service]\nLoadCredential=mqtt-password:/etc/x\n")
    found = Findings()
    check_mqtt(parsed, found, drop_ins)
    assert found.errors == []
    tls = config.parse(proxy + f'[mqtt]\nbroker = "10.0.0.9:8883"\nca_file = "{tmp_path}/no.pem"\n')
    found = Findings()
    check_mqtt(tls, found, drop_ins)
    assert "ca_file" in found.errors[0] and found.good[0].endswith("over TLS")
