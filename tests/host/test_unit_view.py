"""What a unit of ours can read, as the unit would: its sandbox and its user, no capabilities."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.host import unit_view
from sleepyllama.host.unit_view import Sandbox, hidden

IDLE = Sandbox("yes", True, "root")


def test_what_the_sandbox_hides() -> None:
    assert hidden(IDLE, "/home/ann/llama.key") == "its unit hides /home (ProtectHome=yes)"
    assert hidden(IDLE, "/root/k") == "its unit hides /root (ProtectHome=yes)"
    assert hidden(IDLE, "/home/../etc/sleepyllama/llama.key") == ""  # where it really is
    assert hidden(IDLE, "/homes/ann/k") == ""  # another directory, not below /home
    assert hidden(IDLE, "/tmp/k") == "its unit has a /tmp of its own (PrivateTmp=yes)"
    assert hidden(Sandbox("read-only", False, "sleepyllama"), "/home/ann/k") == ""
    assert hidden(Sandbox("tmpfs"), "/run/user/1000/k") == "its unit hides /run/user (ProtectHome=tmpfs)"


@pytest.mark.root
def test_the_idle_unit_cannot_read_a_key_it_needs_and_check_says_so(monkeypatch) -> None:
    """A server's --api-key-file under a home: the idle service logged "Permission denied"
    every 30 s (ProtectHome=yes) and the box never slept, while check (as root) said ok."""
    if os.geteuid() != 0:
        pytest.skip("needs root to try a read as the unit's user")
    monkeypatch.setattr(unit_view, "sandbox_of", lambda unit: IDLE)
    place = Path("/run/sleepyllama-tests") / f"unit-view-{os.getpid()}"
    place.mkdir(parents=True, exist_ok=True)
    try:
        mine = place / "theirs.key"  # a user's own, 0600: root without capabilities may not
        mine.write_text("k\n")
        os.chown(mine, 65534, 65534)
        mine.chmod(0o600)
        good = place / "good.key"  # as README says: root:sleepyllama 0640
        good.write_text("k\n")
        good.chmod(0o640)
        assert unit_view.cannot_read(unit_view.IDLE_UNIT, [str(good)]) == []
        assert unit_view.cannot_read(unit_view.IDLE_UNIT, [str(mine)]) == [
            (str(mine), "root, as its unit runs it, may not read it")]
        boxed = config.parse(
            '[server.llama]\ncommand = ["/usr/bin/llama-server", "--api-key-file", '
            '"/home/ann/llama.key", "--port", "8080"]\n')
        spots = unit_view.idle_blind_spots(boxed)
        assert len(spots) == 1 and spots[0].startswith(
            "[server.llama] --api-key-file /home/ann/llama.key: the idle check cannot read it "
            "(its unit hides /home (ProtectHome=yes)), so it would count the server busy")
        assert "sudo install -m 640 -o root -g sleepyllama /home/ann/llama.key " \
               "/etc/sleepyllama/llama.key" in spots[0]
    finally:
        for file in place.iterdir():
            file.unlink()
        place.rmdir()
