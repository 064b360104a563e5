"""Small words for people: "1 restart", "2 restarts", "1h30m"."""

from __future__ import annotations


def count(number: int, unit: str) -> str:
    """`number` and `unit` in the plural it needs: count(1, "clients") == "1 client"."""
    singular = unit[:-1] if unit.endswith("s") else unit
    plural = unit if unit.endswith("s") else f"{unit}s"
    return f"{number} {singular if number == 1 else plural}"


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for messages: 180 -> "3m", 5400 -> "1h30m", 2.5 -> "2.5s"."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)
