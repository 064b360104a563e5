"""NAME.live.json as the proxy writes it (proxy/live.py): from the wake's one View, read back by
the page's reader, and rewritten only when something in it changed."""

from __future__ import annotations

import json
from pathlib import Path

from sleepyllama import live_state
from sleepyllama.proxy.live import LiveFile
from sleepyllama.proxy.wake import View


class StillWake:
    """A wake as live.py reads it: its state and its View, as the test sets them."""

    def __init__(self) -> None:
        self.view_now = View("asleep", False, None, 0, 0, "waking", 8.5, "suspend", None)

    def state(self) -> str:
        return self.view_now.state

    def view(self) -> View:
        return self.view_now


def test_written_when_it_changed_and_read_back_by_the_page(tmp_path: Path) -> None:
    path = tmp_path / "llama.live.json"
    live, wake = LiveFile(path), StillWake()
    live.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 100.0)  # type: ignore[arg-type]
    read, wrong = live_state.read(json.loads(path.read_text()))
    assert wrong == "" and read is not None
    assert (read.state, read.typical_wake, read.asleep_as, read.listen) == (
        "asleep", 8.5, "suspend", ("0.0.0.0:3939",))
    path.write_text("touched")  # a rewrite would replace this
    live.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 101.0)  # type: ignore[arg-type]
    assert path.read_text() == "touched", "rewritten though nothing changed"
    wake.view_now = View("waking", False, 100.0, 2, 1, "waking", 8.5, "suspend", None)
    live.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 103.0)  # type: ignore[arg-type]
    now = json.loads(path.read_text())
    assert (now["state"], now["signals"], now["clients_waiting"]) == ("waking", 2, 1)
