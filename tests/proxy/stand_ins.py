"""Stand-ins for the proxy's tests: what cannot be real in one process."""

from __future__ import annotations


class NoSignal:
    sent = 0

    def send(self) -> bool:
        self.sent += 1
        return True

    def describe(self) -> str:
        return "nothing"

    def close(self) -> None:
        pass
