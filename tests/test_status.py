"""sleepyllama status, run as a person runs it, even without systemd or with a broken config."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SleepingBackend, proxy_table, sleepyllama_command


def test_status_json_reports_even_without_systemd(tmp_path: Path, cleanup: list) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    config = tmp_path / "sleepyllama.toml"
    config.write_text(proxy_table(backend))
    report = json.loads(sleepyllama_command(config, "status", "--json",
                                    env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}).stdout)
    assert report["proxies"] == [{"name": "llama", "backend": f"127.0.0.1:{backend.port}",
                                  "ready": False, "answer": "Connection refused"}]
    assert "systemd_error" in report or report["units"]


def test_status_with_a_config_error_still_shows_the_units(tmp_path: Path) -> None:
    config = tmp_path / "sleepyllama.toml"
    config.write_text('[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "c6:d9:42:9c:af"\n')
    result = sleepyllama_command(config, "status", "--json",
                         env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert result.returncode == 78
    report = json.loads(result.stdout)
    assert "[proxy.llama] mac: expected a MAC address" in report["config_error"]
    assert "units" in report and ("systemd_error" in report or report["units"] is not None)


def test_the_last_wake_comes_from_the_proxys_ledger(tmp_path: Path, monkeypatch) -> None:
    """It came from the journal, so `--purge` left an old "last wake" in status; the ledger
    goes with --purge, and says how the wake ended."""
    from sleepyllama import history, ledger, status

    monkeypatch.setattr(history, "PROXY_STATE", tmp_path)
    assert "last_wake" not in status.proxy_memory("llama")  # purged: nothing to say
    ledger.append(tmp_path / "llama.ledger.jsonl", ledger.Wake(
        first="192.168.1.20:5123", request="POST /v1/chat/completions", signals=3, ready_after=9.5))
    memory = status.proxy_memory("llama")
    assert memory["last_wake"].endswith(
        "192.168.1.20:5123 POST /v1/chat/completions: ready after 9.5s, 3 wake signals"), memory
