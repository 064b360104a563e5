"""A flood of refusals is said once at first, then once a while with its count."""

from __future__ import annotations

import logging

from sleepyllama.rejections import Rejections


def test_a_flood_is_said_first_at_once_then_counted(caplog) -> None:
    now = [100.0]
    tally = Rejections(logging.getLogger("test"), "datagram(s)", every=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(10_000):
            tally.note("not a command", "10.0.0.5")
        assert len(caplog.records) == 1
        assert caplog.records[0].getMessage() == (
            "ignored 1 datagram(s): not a command: 1 (the last from 10.0.0.5)")
        now[0] += 61
        tally.note("a wrong signature", "10.0.0.6")
        assert len(caplog.records) == 2
        said = caplog.records[1].getMessage()
        assert said.startswith("ignored 10000 datagram(s) in the last 61 s: not a command: 9999; "
                               "a wrong signature: 1"), said
        tally.flush()  # nothing since: nothing to say
        assert len(caplog.records) == 2
