"""Activity signals on the inference host: is anything or anyone using the box? One module per
signal, each a small class with read() -> Reading (busy, idle or unknown, with the human reason):

  gpu.py            the GPUs' pstate or utilization (nvidia-smi), or amdgpu's busy percent
  gpu_processes.py  programs on the GPU that are not our servers (nvidia-smi)
  servers.py        the model servers' requests, through their kinds
  sessions.py       people logged in, with their last input (logind)
  inhibitors.py     logind's sleep inhibitors
  schedule.py       the awake windows of [schedule]
  processes.py      programs the user names ([idle] processes)
  connections.py    established connections on ports the user names ([idle] ports)
  load.py           the load average ([idle] load)

(Whether the box can be woken is not a signal of use: host/wake_on_lan.py, asked before a
suspend.)

A signal that cannot be read is UNKNOWN, never IDLE, and the idle decision treats UNKNOWN as
busy: sleepyllama never suspends on an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sleepyllama.config import IdleConfig, ServerConfig
from sleepyllama.host.activity import Counter
from sleepyllama.host.signals.base import Activity, Reading, Signal
from sleepyllama.host.signals.connections import ConnectionsSignal
from sleepyllama.host.signals.gpu import AmdGpuSignal, GpuSignal
from sleepyllama.host.signals.gpu_processes import GpuProcessesSignal
from sleepyllama.host.signals.inhibitors import Inhibitor, InhibitorsSignal
from sleepyllama.host.signals.load import LoadSignal
from sleepyllama.host.signals.processes import ProcessesSignal
from sleepyllama.host.signals.schedule import ScheduleSignal
from sleepyllama.host.signals.servers import ServersSignal
from sleepyllama.host.signals.sessions import SessionsSignal
from sleepyllama.systemd import Session
from sleepyllama.tools import bounded_output
from sleepyllama.windows import Window

__all__ = ["Activity", "Reading", "Signal", "bounded_output", "configured_signals"]


def configured_signals(idle: IdleConfig, servers: Sequence[ServerConfig],
                       list_inhibitors: Callable[[], Sequence[Inhibitor]],
                       own_pid: int, counters: dict[str, Counter],
                       schedule: Sequence[Window] = (),
                       list_sessions: Callable[[], Sequence[Session]] | None = None,
                       last_check: float | None = None) -> list[Signal]:
    """The signals [idle] asks for. last_check: CLOCK_REALTIME of the previous check, from which
    a person's input counts."""
    signals: list[Signal] = []
    if schedule:
        signals.append(ScheduleSignal(schedule))
    if idle.gpu == "amdgpu":
        signals.append(AmdGpuSignal())
    elif idle.gpu != "off":
        signals.append(GpuSignal(idle.gpu))
        if idle.gpu_processes:
            signals.append(GpuProcessesSignal())
    if idle.servers:
        signals.append(ServersSignal(servers, counters, last_check=last_check))
    if idle.sessions and list_sessions is not None:
        signals.append(SessionsSignal(list_sessions, last_check))
    if idle.inhibitors:
        signals.append(InhibitorsSignal(list_inhibitors, own_pid))
    if idle.processes:
        signals.append(ProcessesSignal(idle.processes))
    if idle.ports:
        signals.append(ConnectionsSignal(idle.ports))
    if idle.load is not None:
        signals.append(LoadSignal(idle.load))
    return signals
