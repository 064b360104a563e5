"""install.sh upgrade's runs, from an installed config and its drop-ins."""

from __future__ import annotations

from pathlib import Path

from sleepyllama import config
from sleepyllama.upgrade import main, runs

CONFIG = """[proxy.llama]
backend = "10.0.0.5:8080"
mac = "ab:cd:ef:01:23:45"
wake_progress = true
[proxy.mine]
backend = "10.0.0.6:8080"
wake_command = ["/usr/local/bin/wake-it"]
[server.llama]
command = ["/opt/llama/llama-server", "-m", "/models/a b.gguf", "--metrics"]
"""


def drop_in(unit_dir: Path, unit: str, listen: str) -> None:
    (unit_dir / f"{unit}.d").mkdir(parents=True)
    (unit_dir / f"{unit}.d" / "listen.conf").write_text(
        f"# written by install.sh\n[Socket]\nListenStream=\nListenStream={listen}\n"
        f"ListenDatagram={listen}\n")


def test_each_table_installed_again_with_what_it_was_installed_with(tmp_path: Path) -> None:
    drop_in(tmp_path, "sleepyllama-proxy@llama.socket", "0.0.0.0:3939")
    drop_in(tmp_path, "sleepyllama-web.socket", "0.0.0.0:3940")
    found, problems = runs(config.parse(CONFIG), tmp_path)
    assert found == [
        ["proxy", "--name", "llama", "--web", "0.0.0.0:3940", "--listen", "0.0.0.0:3939",
         "--backend", "10.0.0.5:8080", "--mac", "ab:cd:ef:01:23:45"],
        ["server", "--name", "llama", "--", "/opt/llama/llama-server", "-m", "/models/a b.gguf",
         "--metrics"]]
    assert problems == ["[proxy.mine]: not installed by install.sh (no listen address in its "
                        "socket's drop-in, or a wake_command): left as it is"]


def test_the_runs_are_printed_nul_separated(tmp_path: Path, capsysbinary) -> None:
    path = tmp_path / "sleepyllama.toml"
    path.write_text(CONFIG)
    assert main(["--config", str(path), "--unit-dir", str(tmp_path)]) == 0
    printed = capsysbinary.readouterr().out
    assert printed == (b"server\0--name\0llama\0--\0/opt/llama/llama-server\0-m\0"
                       b"/models/a b.gguf\0--metrics\0\0")
    path.write_text("")
    assert main(["--config", str(path), "--unit-dir", str(tmp_path)]) == 1
