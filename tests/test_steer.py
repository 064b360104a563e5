"""The way back to the GPU box: signed commands, and everything that must not be taken."""

from __future__ import annotations

import pytest

from sleepyllama import steer
from sleepyllama.steer import Command

SECRET = b"a-shared-secret-of-32-characters"
NOW = 1_796_200_000_123


def test_a_signed_command_is_taken_once_and_only_from_the_secret_s_holder() -> None:
    command = Command("stay-awake", 10800, NOW, "192.168.1.7")
    datagram = steer.encode(SECRET, command)
    assert steer.decode(SECRET, datagram, NOW + 50, 0) == command
    assert "wrong signature" in str(steer.decode(b"another-secret-of-32-characters!", datagram,
                                                 NOW, 0))
    altered = datagram.replace(b"stay-awake 10800", b"stay-awake 99999")
    assert "wrong signature" in str(steer.decode(SECRET, altered, NOW, 0))
    assert "replayed" in str(steer.decode(SECRET, datagram, NOW, last_ms=NOW))
    assert "away from this clock" in str(steer.decode(SECRET, datagram, NOW + 61_000, 0))
    assert "away from this clock" in str(steer.decode(SECRET, datagram, NOW - 61_000, 0))


@pytest.mark.parametrize("datagram", [
    b"", b"hello", b"sleepyllama-steer 1 reboot 0 1796200000123 x " + b"0" * 64,
    b"sleepyllama-steer 1 sleep-now 0 1796200000123 a b " + b"0" * 64,
    b"x" * 600, b"\xff" * 100,
])
def test_anything_else_is_not_a_command(datagram: bytes) -> None:
    assert isinstance(steer.decode(SECRET, datagram, NOW, 0), str)


@pytest.mark.parametrize("seconds", [0, steer.MAX_STAY + 1])
def test_stay_awake_is_for_a_second_to_a_week(seconds: int) -> None:
    datagram = steer.encode(SECRET, Command("stay-awake", seconds, NOW, "me"))
    assert "a week" in str(steer.decode(SECRET, datagram, NOW, 0))


def test_the_answer_is_signed_over_the_command_it_answers() -> None:
    command = Command("sleep-now", 0, NOW, "me")
    answer = steer.answer(SECRET, command, False, "staying awake: busy: llama: 2 requests\n\x07")
    assert steer.read_answer(SECRET, answer, command) == (
        False, "staying awake: busy: llama: 2 requests??")  # no line break, no bell
    assert steer.read_answer(SECRET, answer, Command("sleep-now", 0, NOW + 1, "me")) is None
    assert steer.read_answer(b"another-secret-of-32-characters!", answer, command) is None


def test_the_secret_comes_from_the_credential_else_the_file(tmp_path, monkeypatch) -> None:
    own = tmp_path / "steer.secret"
    own.write_text("from-the-file-0123456789\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert steer.read_secret(own) == b"from-the-file-0123456789"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "steer-secret").write_text("from-the-credential-0123\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert steer.read_secret(own) == b"from-the-credential-0123"
    (credentials / "steer-secret").write_text("short\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        steer.read_secret(own)


def test_two_commands_of_one_process_in_one_millisecond_get_two_moments() -> None:
    """The box takes one command per moment (later than the last): a second button pressed in
    the same millisecond must not read as a replay."""
    first = steer._later_than_the_last(NOW)
    assert steer._later_than_the_last(NOW) == first + 1
    assert steer._later_than_the_last(first + 100) == first + 100
