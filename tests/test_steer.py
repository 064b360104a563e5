"""The way back to the GPU box: signed commands, and everything that must not be taken."""

from __future__ import annotations

import pytest

from sleepyllama import steer
from sleepyllama.steer import Command

SECRET = b"a-shared-secret-of-32-characters"
NOW = 1_796_200_000_123


BOX = "192.168.1.50"


def test_a_signed_command_is_taken_only_from_the_secret_s_holder() -> None:
    command = Command("stay-awake", 10800, NOW, "192.168.1.7", BOX)
    datagram = steer.encode(SECRET, command)
    assert steer.decode(SECRET, datagram, NOW + 50, BOX) == command
    assert "wrong signature" in why(steer.decode(b"another-secret-of-32-characters!", datagram,
                                                 NOW, BOX))
    altered = datagram.replace(b"stay-awake 10800", b"stay-awake 99999")
    assert "wrong signature" in why(steer.decode(SECRET, altered, NOW, BOX))
    # a forger learns nothing: no answer to what the secret's holder did not sign
    assert steer.decode(SECRET, altered, NOW, BOX).answer is None  # type: ignore[union-attr]


def why(decoded: Command | steer.Refusal) -> str:
    assert isinstance(decoded, steer.Refusal), decoded
    return decoded.why


def refusal_answer(decoded: Command | steer.Refusal, command: Command) -> tuple[bool, str]:
    """What the sender of `command` reads from the box's answer to it."""
    assert isinstance(decoded, steer.Refusal) and decoded.answer is not None, decoded
    said = steer.read_answer(SECRET, decoded.answer, command)
    assert said is not None
    return said


def test_a_command_is_bound_to_the_box_it_was_sent_to() -> None:
    """Found by trying it: every box shares the secret, and a sleep-now sent to box A was
    taken by box B."""
    command = Command("sleep-now", 0, NOW, "192.168.1.7", BOX)
    datagram = steer.encode(SECRET, command)
    assert refusal_answer(steer.decode(SECRET, datagram, NOW, "192.168.1.51"), command) == (
        False, "for another box: sent to 192.168.1.50, received on 192.168.1.51")
    assert refusal_answer(steer.decode(SECRET, datagram, NOW, ""), command)[0] is False
    # the same address as a dual-stack socket and IPv6 scopes spell it
    assert steer.decode(SECRET, datagram, NOW, "::ffff:192.168.1.50") == command
    six = Command("sleep-now", 0, NOW, "me", "fe80::1")
    assert steer.decode(SECRET, steer.encode(SECRET, six), NOW, "fe80::1%eth0") == six


def test_a_clock_away_from_the_box_s_is_answered_with_how_far() -> None:
    ahead = Command("stay-awake", 60, NOW + 61_000, "me", BOX)
    taken, said = refusal_answer(steer.decode(SECRET, steer.encode(SECRET, ahead), NOW, BOX),
                                 ahead)
    assert not taken and said.startswith("sent 61 s ahead of this box's clock"), said
    behind = Command("stay-awake", 60, NOW - 75_000, "me", BOX)
    said = refusal_answer(steer.decode(SECRET, steer.encode(SECRET, behind), NOW, BOX), behind)[1]
    assert said.startswith("sent 75 s behind this box's clock"), said


def test_an_older_sender_is_told_to_upgrade_and_nothing_is_done() -> None:
    import hashlib
    import hmac

    body = f"sleepyllama-steer 1 sleep-now 0 {NOW} alice"
    old = f"{body} {hmac.new(SECRET, body.encode(), hashlib.sha256).hexdigest()}\n".encode()
    decoded = steer.decode(SECRET, old, NOW, BOX)
    assert isinstance(decoded, steer.Refusal) and decoded.answer is not None
    assert decoded.answer.startswith(f"sleepyllama-steer 1 refused {NOW} ".encode())
    assert b"upgrade the always-on host" in decoded.answer


@pytest.mark.parametrize("datagram", [
    b"", b"hello", b"sleepyllama-steer 2 reboot 0 1796200000123 1.2.3.4 x " + b"0" * 64,
    b"sleepyllama-steer 2 sleep-now 0 1796200000123 1.2.3.4 a b " + b"0" * 64,
    b"sleepyllama-steer 2 sleep-now 0 1796200000123 evil.example a " + b"0" * 64,
    b"sleepyllama-steer 1 sleep-now 0 1796200000123 a " + b"0" * 64,
    b"x" * 600, b"\xff" * 100,
])
def test_anything_else_is_not_a_command(datagram: bytes) -> None:
    decoded = steer.decode(SECRET, datagram, NOW, BOX)
    assert isinstance(decoded, steer.Refusal) and decoded.answer is None


@pytest.mark.parametrize("seconds", [0, steer.MAX_STAY + 1])
def test_stay_awake_is_for_a_second_to_a_week(seconds: int) -> None:
    datagram = steer.encode(SECRET, Command("stay-awake", seconds, NOW, "me", BOX))
    assert "a week" in why(steer.decode(SECRET, datagram, NOW, BOX))


def test_the_answer_is_signed_over_the_command_it_answers() -> None:
    command = Command("sleep-now", 0, NOW, "me", BOX)
    answer = steer.answer(SECRET, command, False, "staying awake: busy: llama: 2 requests\n\x07")
    assert steer.read_answer(SECRET, answer, command) == (
        False, "staying awake: busy: llama: 2 requests??")  # no line break, no bell
    assert steer.read_answer(SECRET, answer, Command("sleep-now", 0, NOW + 1, "me", BOX)) is None
    # the same moment from another sender, or to another box, is another command
    assert steer.read_answer(SECRET, answer, Command("sleep-now", 0, NOW, "bob", BOX)) is None
    assert steer.read_answer(SECRET, answer, Command("sleep-now", 0, NOW, "me", "10.0.0.9")) is None
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
    """Two like commands in one millisecond would be one datagram, which the box takes once:
    a second button pressed in the same millisecond must not read as a retry."""
    first = steer._a_moment_of_its_own(NOW)
    assert steer._a_moment_of_its_own(NOW) == first + 1
    assert steer._a_moment_of_its_own(first + 100) == first + 100
