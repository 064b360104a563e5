"""NAME.live.json as the proxy writes it (proxy/live.py): from the wake's one View, read back by
the page's reader, and rewritten only when something in it changed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from sleepyllama import live_state
from sleepyllama.proxy import live
from sleepyllama.proxy.live import LiveFile
from sleepyllama.proxy.wake import View


class StillWake:
    """A wake as live.py reads it: its state and its View, as the test sets them."""

    def __init__(self) -> None:
        self.view_now = View("asleep", 90.0, False, None, 0, 0, "waking", 8.5, "suspend", None)

    def state(self) -> str:
        return self.view_now.state

    def view(self) -> View:
        return self.view_now


def test_written_when_it_changed_and_read_back_by_the_page(tmp_path: Path, monkeypatch) -> None:
    loop_now = [100.0]  # the event loop's clock, and the wall clock 1e9 s ahead of it
    monkeypatch.setattr(live, "time", SimpleNamespace(time=lambda: 1e9 + loop_now[0]))
    path = tmp_path / "llama.live.json"
    file, wake = LiveFile(path), StillWake()
    file.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 100.0)  # type: ignore[arg-type]
    read, wrong = live_state.read(json.loads(path.read_text()))
    assert wrong == "" and read is not None
    assert (read.state, read.since, read.typical_wake, read.asleep_as, read.listen) == (
        "asleep", 1e9 + 90.0, 8.5, "suspend", ("0.0.0.0:3939",))
    path.write_text("touched")  # a rewrite would replace this
    loop_now[0] = 101.0
    file.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 101.0)  # type: ignore[arg-type]
    assert path.read_text() == "touched", "rewritten though nothing changed"
    wake.view_now = View("waking", 100.0, False, 100.0, 2, 1, "waking", 8.5, "suspend", None)
    loop_now[0] = 103.0
    file.update("llama", "10.0.0.5:8080", ["0.0.0.0:3939"], wake, 103.0)  # type: ignore[arg-type]
    now = json.loads(path.read_text())
    assert (now["state"], now["signals"], now["clients_waiting"]) == ("waking", 2, 1)
