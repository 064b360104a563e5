"""Files written whole (a reader sees the old content or the new, never a part of either), and
the numbers read back from them checked: JSON and TOML hold NaN and Infinity too."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data`. Each writer has a temporary file of its own beside it, so two
    writers at once (two idle checks) never write into one another's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, mode)  # a unit's UMask=0077 would otherwise decide who reads it
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def finite(value: object) -> bool:
    """A number as a state file should hold it: an int or float, not a bool, not NaN or
    infinite."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def within(value: object, low: float, high: float) -> float | None:
    """A finite number from a file, as a float, where it lies in [low, high]; None otherwise."""
    return float(value) if finite(value) and low <= value <= high else None  # type: ignore[operator]
