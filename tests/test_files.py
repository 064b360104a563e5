"""Files written whole, each writer with a temporary file of its own."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sleepyllama.files import write_atomic


def test_written_whole_with_its_mode_and_nothing_left_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "idle.json"
    write_atomic(path, b"one", 0o644)
    write_atomic(path, b"two", 0o600)
    assert path.read_bytes() == b"two" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["idle.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path,
                                                                    monkeypatch) -> None:
    import os

    path = tmp_path / "answers.json"
    write_atomic(path, b"old")

    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["answers.json"]
