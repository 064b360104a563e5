"""The boxes as Prometheus reads them: one-hot states, and the same kWh as the page."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sleepyllama.dashboard import metrics
from sleepyllama.dashboard.boxes import Box
from sleepyllama.live_state import STATES


def samples(boxes: list[Box]) -> dict[tuple, float]:
    body, _ = metrics.exposition(lambda: boxes, None)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


@pytest.mark.parametrize("state", STATES)
def test_the_state_is_one_hot_in_every_state(state: str) -> None:
    """Found by trying it: after a failed wake, and before first contact, all three series
    read 0, though README calls them one-hot."""
    read = samples([Box("llama", "10.0.0.5:8080", state)])
    states = {dict(labels)["state"]: value for (name, labels), value in read.items()
              if name == "sleepyllama_backend_state"}
    assert set(states) == set(STATES)
    assert [name for name, value in states.items() if value == 1.0] == [state]


def test_the_kwh_saved_are_the_page_s() -> None:
    box = Box("llama", "10.0.0.5:8080", "asleep", kwh_saved_total=8.95)
    read = samples([box, Box("other", "10.0.0.6:8080", "asleep")])
    assert read[("sleepyllama_energy_saved_kwh_total", (("proxy", "llama"),))] == 8.95
    # a box that never said what its sleeps save has no figure, rather than a false 0
    assert ("sleepyllama_energy_saved_kwh_total", (("proxy", "other"),)) not in read


def test_the_time_asleep_is_the_page_s() -> None:
    """Found by trying it: the proxy's /metrics had no kWh and no time asleep, while the page
    and Home Assistant had them."""
    box = Box("llama", "10.0.0.5:8080", "asleep", asleep_seconds_total=7200.0)
    assert samples([box])[("sleepyllama_asleep_seconds_total", (("proxy", "llama"),))] == 7200
