"""Small words for people: "1 restart", "2 restarts"."""

from __future__ import annotations


def count(number: int, unit: str) -> str:
    """`number` and `unit` in the plural it needs: count(1, "clients") == "1 client"."""
    singular = unit[:-1] if unit.endswith("s") else unit
    plural = unit if unit.endswith("s") else f"{unit}s"
    return f"{number} {singular if number == 1 else plural}"
