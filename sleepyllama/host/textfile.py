"""The GPU box's figures for Prometheus, the way timer-driven jobs give them: each idle check
writes sleepyllama.prom for node_exporter's textfile collector (--collector.textfile.directory),
atomically (a scrape never reads half a file), readable by node_exporter's user.

  sleepyllama_idle_seconds                 idle so far, by the idle clock
  sleepyllama_busy{signal}                 1 where that signal reads busy or unknown
  sleepyllama_asleep_seconds_total         time asleep, from this box's ledger
  sleepyllama_suspends_total               sleeps, from the ledger
  sleepyllama_energy_saved_kwh_total       what they saved ([energy], as sleepyllama history;
                                           absent until the box has a power figure)
  sleepyllama_gpu_power_watts{gpu}         each GPU's power.draw now (nvidia-smi)
  sleepyllama_server_ready{server}         1 where the server answered the check's look

figures() is pure: the check's readings and the ledger in, a registry out.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sleepyllama import history, ledger
from sleepyllama.config import EnergyConfig
from sleepyllama.files import write_atomic
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.host.signals.gpu import Gpu

log = logging.getLogger(__name__)

FILE = "sleepyllama.prom"


class _Families(Collector):
    """Families built once, for one write. Metric families, not prometheus_client's Counter:
    a Counter adds a _created series with the moment it was made, which a file written anew
    every 30 s would change at every write."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def figures(readings: Sequence[Reading], idle_for: float, gpus: Sequence[Gpu],
            servers: Mapping[str, bool], entries: Sequence[ledger.Entry], energy: EnergyConfig,
            idle_watts: dict | None, now: float | None = None) -> CollectorRegistry:
    now = time.time() if now is None else now
    idle = GaugeMetricFamily("sleepyllama_idle_seconds", "Seconds idle so far, by the idle clock",
                             value=idle_for)
    busy = GaugeMetricFamily("sleepyllama_busy", "1 where the signal reads busy or unknown "
                             "(unknown counts as busy)", labels=["signal"])
    for reading in readings:
        busy.add_metric([reading.signal], 0 if reading.activity is Activity.IDLE else 1)
    sleeps = history.sleeps(entries)
    families: list[Metric] = [
        idle, busy,
        CounterMetricFamily("sleepyllama_asleep_seconds", "Seconds asleep, from the ledger",
                            value=history.asleep_seconds(sleeps, 0.0, now, now)),
        CounterMetricFamily("sleepyllama_suspends", "Sleeps, from the ledger",
                            value=len(sleeps)),
    ]
    awake_watts, _how = history.power(energy, idle_watts)
    if awake_watts is not None:
        families.append(CounterMetricFamily(
            "sleepyllama_energy_saved_kwh", "kWh the sleeps saved against the box awake and "
            "idle", value=history.kwh_saved(sleeps, 0.0, now, now, awake_watts, energy)))
    power = GaugeMetricFamily("sleepyllama_gpu_power_watts", "Each GPU's power draw now",
                              labels=["gpu"])
    for gpu in gpus:
        if gpu.power is not None:
            power.add_metric([str(gpu.index)], gpu.power)
    ready = GaugeMetricFamily("sleepyllama_server_ready", "1 where the server answered the idle "
                              "check", labels=["server"])
    for name, answered in servers.items():
        ready.add_metric([name], 1 if answered else 0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families, power, ready]))
    return registry


def write(directory: Path, registry: CollectorRegistry) -> None:
    """sleepyllama.prom in `directory`, whole or not at all; a failure is said, never fatal (it
    must not stop the box from sleeping)."""
    try:
        write_atomic(directory / FILE, generate_latest(registry), 0o644)
    except OSError as error:
        fix = (f": the idle unit's sandbox lets it write its StateDirectory only; for {directory}:"
               f" systemctl edit sleepyllama-idle, [Service] ReadWritePaths={directory}"
               if error.errno == errno.EROFS else "")
        log.warning("cannot write %s for Prometheus: %s%s", directory / FILE, error.strerror, fix)
