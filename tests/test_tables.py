"""install.sh's config merge: one table replaced or added, every other byte kept."""

from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.tables import main, remove_table, set_key, set_table

USER_FILE = """# my settings
[proxy.llama]
backend = "10.0.0.5:8080"   # old box
mac = "ab:cd:ef:01:23:45"

# the whisper box
[proxy.whisper]
backend = "10.0.0.6:9000"
mac = "ab:cd:ef:01:23:46"
"""


def test_replacing_a_table_keeps_the_others_and_their_comments() -> None:
    new = set_table(USER_FILE, "proxy.llama", ['backend = "10.0.0.7:8080"', 'mac = "ab:cd:ef:01:23:47"'])
    assert new == USER_FILE.replace('"10.0.0.5:8080"   # old box', '"10.0.0.7:8080"').replace(
        "01:23:45", "01:23:47")


def test_adding_tables_and_keys() -> None:
    new = set_table(USER_FILE, "server.llama", ['command = ["llama-server"]'])
    assert new.startswith(USER_FILE) and new.endswith('\n\n[server.llama]\ncommand = ["llama-server"]\n')
    with_idle = set_key(new, "idle", "timeout", '"1h"')
    assert with_idle.endswith('[idle]\ntimeout = "1h"\n')
    changed = set_key(with_idle + "gpu = \"off\"\n", "idle", "timeout", '"2h"')
    assert changed.endswith('[idle]\ntimeout = "2h"\ngpu = "off"\n')
    config.parse(changed)  # still valid TOML of ours


def test_command_line_quoting_and_unchanged(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sleepyllama.toml"
    command = ["/opt/llama server", "-m", 'C:\\models\\"q".gguf', "--port", "8080"]
    assert main([str(path), "server", "llama", "--idle-timeout", "30m", "--", *command]) == 0
    loaded = config.load(path)
    assert loaded.server("llama").command == tuple(command)
    assert loaded.idle.timeout == 1800
    assert main([str(path), "server", "llama", "--idle-timeout", "30m", "--", *command]) == 0
    assert capsys.readouterr().out.split() == ["written", "unchanged"]


def test_an_invalid_result_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    path.write_text(USER_FILE)
    assert main([str(path), "proxy", "llama", "--backend", "nohost", "--mac", "ab:cd:ef:01:23:45"]) == 78
    assert path.read_text() == USER_FILE


def test_the_gpu_choice_is_kept_unless_given(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    assert main([str(path), "server", "llama", "--gpu-if-unset", "off", "--", "llama-server"]) == 0
    assert config.load(path).idle.gpu == "off"
    # a box that later gains nvidia-smi: the user's (or the first install's) choice stays
    assert main([str(path), "server", "llama", "--gpu-if-unset", "pstate", "--", "llama-server"]) == 0
    assert config.load(path).idle.gpu == "off"
    assert main([str(path), "server", "llama", "--gpu", "amdgpu", "--", "llama-server"]) == 0
    assert config.load(path).idle.gpu == "amdgpu"


def test_removing_a_table_keeps_every_other_byte() -> None:
    assert remove_table(USER_FILE, "proxy.llama") == USER_FILE.replace(
        '[proxy.llama]\nbackend = "10.0.0.5:8080"   # old box\nmac = "ab:cd:ef:01:23:45"\n\n', "")
    assert remove_table(USER_FILE, "proxy.whisper") == USER_FILE[:USER_FILE.index("[proxy.whisper]")]
    assert remove_table(USER_FILE, "proxy.nothing") == USER_FILE


def test_a_proxy_table_with_kind_and_api_key_file(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    assert main([str(path), "proxy", "llama", "--backend", "10.0.0.5:8080", "--mac",
                 "ab:cd:ef:01:23:45", "--kind", "ollama", "--api-key-file", "/etc/k"]) == 0
    proxy = config.load(path).proxy("llama")
    assert (proxy.kind, proxy.api_key_file, proxy.wake_progress) == ("ollama", "/etc/k", False)
    assert main([str(path), "proxy", "llama", "--backend", "10.0.0.5:8080", "--mac",
                 "ab:cd:ef:01:23:45", "--wake-progress"]) == 0
    assert config.load(path).proxy("llama").wake_progress is True
    # auto is the default: not written
    assert main([str(path), "proxy", "llama", "--backend", "10.0.0.5:8080", "--mac",
                 "ab:cd:ef:01:23:45", "--kind", "auto"]) == 0
    assert "kind" not in path.read_text()


def test_the_action_is_written_and_kept_when_not_given(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    command = ["/usr/bin/llama-server", "--port", "8080"]
    assert main([str(path), "server", "llama", "--action", "poweroff", "--", *command]) == 0
    assert config.load(path).idle.action == "poweroff"
    assert main([str(path), "server", "llama", "--", *command]) == 0  # a re-run without it
    assert config.load(path).idle.action == "poweroff"
    with pytest.raises(SystemExit):
        main([str(path), "server", "llama", "--action", "shutdown", "--", *command])


def test_a_rerun_keeps_what_it_was_not_asked_to_change(tmp_path: Path, capsys) -> None:
    """Re-running the quick-start proxy line without --api-key-file and --wake-progress dropped
    both; --proxy replaced the proxies told before, so a second box's proxy stopped getting
    hints; a server's own keys (activity, stop_timeout) went with a re-run."""
    path = tmp_path / "sleepyllama.toml"
    proxy = [str(path), "proxy", "llama", "--backend", "box:8080", "--mac", "ab:cd:ef:01:23:45"]
    assert main([*proxy, "--api-key-file", "/etc/sleepyllama/llama.key", "--wake-progress",
                 "--kind", "llama-server"]) == 0
    assert main(proxy) == 0  # the quick-start line again, as it is in README
    assert "kept from before: kind, api_key_file, wake_progress" in capsys.readouterr().err
    again = config.load(path).proxy("llama")
    assert again.api_key_file == "/etc/sleepyllama/llama.key" and again.wake_progress
    assert again.kind == "llama-server"
    assert main([*proxy, "--kind", "auto"]) == 0  # asked: the default again
    assert config.load(path).proxy("llama").kind == "auto"

    command = ["/usr/bin/llama-server", "--port", "8080"]
    server = [str(path), "server", "llama"]
    assert main([*server, "--notify-proxy", "192.168.1.2:3939", "--", *command]) == 0
    path.write_text(path.read_text().replace('command = ["/usr/bin/llama-server", "--port", "8080"]',
                                             'command = ["/usr/bin/llama-server", "--port", "8080"]\n'
                                             'stop_timeout = "90s"'))
    assert main([*server, "--notify-proxy", "192.168.1.3:3939", "--", *command]) == 0
    loaded = config.load(path)
    assert [str(p) for p in loaded.notify.proxies] == ["192.168.1.2:3939", "192.168.1.3:3939"]
    assert loaded.server("llama").stop_timeout == 90.0


def test_the_broker_s_ca_turns_tls_on(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    assert main([str(path), "proxy", "llama", "--backend", "10.0.0.5:8080", "--mac",
                 "ab:cd:ef:01:23:45", "--mqtt-broker", "10.0.0.9:8883",
                 "--mqtt-ca-file", "/etc/sleepyllama/mqtt-ca.pem"]) == 0
    mqtt = config.load(path).mqtt
    assert (mqtt.tls, mqtt.ca_file) == (True, "/etc/sleepyllama/mqtt-ca.pem")


def test_learned_pre_wakes_are_written_kept_on_a_rerun_and_dropped_when_off(tmp_path: Path) -> None:
    path = tmp_path / "sleepyllama.toml"
    proxy = [str(path), "proxy", "llama", "--backend", "10.0.0.5:8080", "--mac", "ab:cd:ef:01:23:45"]
    assert main([*proxy, "--prewake", "learned"]) == 0
    assert config.load(path).proxy("llama").prewake == "learned"
    assert main(proxy) == 0  # a re-run without it keeps it
    assert config.load(path).proxy("llama").prewake == "learned"
    assert main([*proxy, "--prewake", "off"]) == 0
    assert config.load(path).proxy("llama").prewake == "off"
    assert "prewake" not in path.read_text()
    with pytest.raises(SystemExit):
        main([*proxy, "--prewake", "always"])
