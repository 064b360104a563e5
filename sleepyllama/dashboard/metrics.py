"""GET /metrics: the boxes in Prometheus's text exposition, through prometheus_client.

Built anew at each scrape from the files the page reads (boxes.py): a custom collector, no
state of its own, so a restart of the page loses nothing. The counters are the ledger's, which
rolls past 1 MiB: Prometheus reads the drop as a counter reset, as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from sleepyllama.dashboard.boxes import Box
from sleepyllama.live_state import STATES

# first signal to ready: a suspended box takes seconds, a cold boot minutes
WAKE_BUCKETS = (2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


def histogram_buckets(samples: Sequence[float]) -> list[tuple[str, float]]:
    buckets = [(f"{bound:g}", float(sum(1 for seconds in samples if seconds <= bound)))
               for bound in WAKE_BUCKETS]
    return [*buckets, ("+Inf", float(len(samples)))]


class BoxCollector(Collector):
    def __init__(self, read: Callable[[], list[Box]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        boxes = self.read()
        up = GaugeMetricFamily("sleepyllama_backend_up", "1 when the proxy believes its backend "
                               "ready, else 0", labels=["proxy"])
        state = GaugeMetricFamily("sleepyllama_backend_state", "The backend's state as the "
                                  "proxy believes it, one-hot", labels=["proxy", "state"])
        wakes = CounterMetricFamily("sleepyllama_wakes", "Wakes that reached ready",
                                    labels=["proxy"])
        give_ups = CounterMetricFamily("sleepyllama_wake_give_ups", "Wakes after which held "
                                       "clients got a 503", labels=["proxy"])
        waiting = GaugeMetricFamily("sleepyllama_clients_waiting", "Clients waiting for the "
                                    "backend now", labels=["proxy"])
        answers = CounterMetricFamily("sleepyllama_cache_answers", "Requests answered from the "
                                      "cache while the backend slept", labels=["proxy"])
        seconds = HistogramMetricFamily("sleepyllama_wake_seconds", "From the first wake signal "
                                        "to ready", labels=["proxy"])
        asleep = CounterMetricFamily("sleepyllama_asleep_seconds", "Seconds the box slept, "
                                     "from its sleeping hints to its being seen up",
                                     labels=["proxy"])
        saved = CounterMetricFamily("sleepyllama_energy_saved_kwh", "What the box's sleeps "
                                    "saved, as the page and Home Assistant count it (absent "
                                    "until the box says what a sleep saves)", labels=["proxy"])
        for box in boxes:
            up.add_metric([box.name], 1.0 if box.state == "awake" else 0.0)
            for name in STATES:  # every state the page knows: exactly one reads 1
                state.add_metric([box.name, name], 1.0 if box.state == name else 0.0)
            wakes.add_metric([box.name], box.wakes_total)
            give_ups.add_metric([box.name], box.give_ups_total)
            waiting.add_metric([box.name], box.clients_waiting)
            answers.add_metric([box.name], box.cache_answers_total)
            seconds.add_metric([box.name], histogram_buckets(box.wake_seconds),
                               sum(box.wake_seconds))
            asleep.add_metric([box.name], box.asleep_seconds_total)
            if box.kwh_saved_total is not None:
                saved.add_metric([box.name], box.kwh_saved_total)
        yield from (up, state, wakes, give_ups, waiting, answers, seconds, asleep, saved)


def exposition(read: Callable[[], list[Box]], accept: str | None) -> tuple[bytes, str]:
    """The body and its Content-Type, in the format the scraper asks for (its Accept header:
    Prometheus's text format, or OpenMetrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoxCollector(read))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type
