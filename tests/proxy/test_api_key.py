"""The backend's API key on the proxy: read from systemd's credential or the file, never shown,
and a client's key compared as llama-server reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.config import ConfigError
from sleepyllama.proxy import api_key


def table(key_file: Path) -> config.ProxyConfig:
    return config.parse(f'[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                        f'api_key_file = "{key_file}"\n').proxy("llama")


def test_read_from_the_file_or_systemds_credential(tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "llama.key"
    key_file.write_text("from-file\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert api_key.read(table(key_file)) == "from-file"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "api-key").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert api_key.read(table(key_file)) == "from-credential"
    assert api_key.read(config.parse('[proxy.a]\nbackend = "h:1"\nmac = "ab:cd:ef:01:23:45"\n')
                        .proxy("a")) is None


def test_a_missing_or_empty_key_is_a_config_error_that_names_the_fix(tmp_path: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"\[proxy.llama\] api_key_file: .*--api-key-file"):
        api_key.read(table(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="holds no key"):
        api_key.read(table(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="absolute path"):
        config.parse('[proxy.a]\nbackend = "h:1"\nmac = "ab:cd:ef:01:23:45"\napi_key_file = "k"\n')


def test_presented_as_llama_server_reads_it() -> None:
    assert api_key.presented([(b"authorization", b"Bearer k1")]) == "k1"
    assert api_key.presented([(b"x-api-key", b"k2")]) == "k2"
    assert api_key.presented([(b"authorization", b"Basic dXNlcg==")]) == "Basic dXNlcg=="
    assert api_key.presented([]) == ""
    assert api_key.matches(None, "") and api_key.matches("k", "k")
    assert not api_key.matches("k", "") and not api_key.matches("k", "kk")
