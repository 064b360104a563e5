"""The ledger's own promises: who may read it, and which entries end a sleep."""

from __future__ import annotations

import os
import stat

from sleepyllama import ledger


def test_a_new_ledger_is_readable_by_the_page_whatever_the_unit_s_umask(tmp_path) -> None:
    """Found by trying it: the idle unit's UMask=0077 made the box's ledger 0600, and its own
    page said "its ledger is unreadable" and never showed its week."""
    path = tmp_path / "ledger.jsonl"
    old = os.umask(0o077)
    try:
        ledger.append(path, "box-sleeping", action="suspend")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o600)  # a user's own choice afterwards is kept
    ledger.append(path, "box-up")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_what_ends_a_sleep() -> None:
    assert ledger.ends_a_sleep({"event": "box-up"})
    assert ledger.ends_a_sleep({"event": "wake", "ready_after": 9.0})
    assert not ledger.ends_a_sleep({"event": "wake", "gave_up_after": 180.0})
    assert not ledger.ends_a_sleep({"event": "box-sleeping"})
