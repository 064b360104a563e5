"""Where a server's model went: the GPU, or the CPU after CUDA failed. A server on the CPU still
answers, 10-50x slower, and nothing else says why; its own output does, as it passes through the
supervisor to the journal (each kind knows its lines: kinds/). Asked for GPU layers and loaded on
the CPU, or with fewer layers on the GPU than its last load on this box: READY (it answers), but
its STATUS, the journal and the ledger say so.

The last load's layers are kept per server in the servers' StateDirectory (placement.json),
checked for shape on load like every state file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from sleepyllama import files
from sleepyllama.kinds.base import Kind

log = logging.getLogger(__name__)

FIX = ("CUDA did not come back after a resume: sudo systemctl restart sleepyllama-gpu-check "
       "(it reloads nvidia_uvm) then this server, or reboot; sleepyllama check shows the "
       "driver's suspend settings")


class Placement:
    def __init__(self, kind: Kind, command: Sequence[str],
                 last_layers: tuple[int, int] | None = None) -> None:
        self.kind, self.wants_gpu, self.last_layers = kind, kind.wants_gpu(command), last_layers
        self.on_cpu = ""
        self.layers: tuple[int, int] | None = None

    def feed(self, line: str) -> None:
        said = self.kind.gpu_line(line)
        if said is None:
            return
        if said.layers is not None:
            self.layers = said.layers
        if said.on_cpu and not self.on_cpu:
            self.on_cpu = said.on_cpu  # the first reason is the cause

    def problem(self) -> str:
        """"on the CPU: CUDA failed to initialize (unknown error)", or "" when all is well."""
        expected_gpu = self.wants_gpu or (self.last_layers is not None and self.last_layers[0] > 0)
        if self.on_cpu and expected_gpu and (self.layers is None or self.layers[0] == 0):
            return f"on the CPU: {self.on_cpu}"
        if self.layers and self.last_layers and self.layers[0] < self.last_layers[0]:
            return (f"with {self.layers[0]}/{self.layers[1]} layers on the GPU "
                    f"({self.last_layers[0]} at its last load here)")
        return ""


def load(path: Path, name: str) -> tuple[int, int] | None:
    """The layers of the server's last load on the GPU; None when unknown or malformed."""
    try:
        record = json.loads(path.read_text())
        layers = record[name]
        if (isinstance(layers, list) and len(layers) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in layers)
                and layers[0] <= layers[1]):
            return layers[0], layers[1]
        log.warning("%s: the layers of %s are malformed (%r): forgotten", path, name, layers)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, KeyError):
        pass  # nothing kept for this server, or a file that is not ours: start afresh
    return None


def remember(path: Path, name: str, layers: tuple[int, int]) -> None:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            record = {}
    except (OSError, ValueError):
        record = {}
    record[name] = list(layers)
    try:
        files.write_atomic(path, (json.dumps(record) + "\n").encode(), 0o644)
    except OSError as error:
        log.warning("cannot keep %s: %s", path, error)
