"""The idle unit's state file: what a reset keeps."""

from __future__ import annotations

import json

from sleepyllama.host import state


def test_a_reset_keeps_the_measured_idle_draw(tmp_path) -> None:
    """Found by trying it: a Sleep now right after a resume told the proxy "sleeping suspend"
    with no watts (the reset at resume dropped the measured draw), so the page counted
    nothing for that sleep."""
    path = tmp_path / "idle.json"
    state.write(path, {"boot_id": "b", "idle_since": 100.0, "checked_at": 130.0,
                       "idle_watts": {"watts": 41.5, "samples": 20}})
    state.reset(path, "b", "resumed")
    record = state.load(path)[1]
    assert state.idle_watts(record) == {"watts": 41.5, "samples": 20}
    assert record["reason"] == "resumed" and record["idle_since"] is None
    # a figure that is no figure is not carried on
    path.write_text(json.dumps({"boot_id": "b", "idle_watts": {"watts": "NaN", "samples": 1}}))
    state.reset(path, "b", "resumed")
    assert state.idle_watts(state.load(path)[1]) is None
