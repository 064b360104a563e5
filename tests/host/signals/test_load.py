"""The load average ([idle] load, host/signals/load.py): /proc/loadavg; and the [idle] keys of
the work a user names."""

from __future__ import annotations

import pytest

from sleepyllama import config
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.load import LoadSignal, five_minute_load


def test_load_above_the_threshold() -> None:
    assert five_minute_load("0.52 2.31 1.10 2/312 4242\n") == 2.31
    assert LoadSignal(2.0, lambda: "0.52 2.31 1.10 2/312 4242\n").read().activity is Activity.BUSY
    assert LoadSignal(3.0, lambda: "0.52 2.31 1.10 2/312 4242\n").read().activity is Activity.IDLE
    assert LoadSignal(2.0, lambda: "").read().activity is Activity.UNKNOWN
    assert LoadSignal(1e9).read().activity is Activity.IDLE  # this machine's own /proc/loadavg


@pytest.mark.parametrize(("text", "error"), [
    ('processes = "make"', "list of program names"),
    ('processes = ["/usr/bin/make"]', "list of program names"),
    ("ports = [0]", "port number"),
    ("load = nan", "a number"),
    ('woken_by = "plug"', "lan"),
])
def test_bad_idle_keys_name_the_key(text: str, error: str) -> None:
    with pytest.raises(config.ConfigError, match=error):
        config.parse(f"[idle]\n{text}\n")
