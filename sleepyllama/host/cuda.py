"""Does CUDA initialize? Asked the way a model server asks: cuInit(0) in libcuda.so.1, the
driver's own library, through ctypes, in a short-lived child process, so that nothing here keeps
the driver (and /dev/nvidia-uvm) open afterwards: a held nvidia_uvm cannot be reloaded.

After a resume CUDA can fail with error 999 (CUDA_ERROR_UNKNOWN) until nvidia_uvm is reloaded,
and a server then runs on the CPU, 10-50x slower, without saying why. host/gpu_check.py asks
this before the servers start again.

  python -m sleepyllama.host.cuda     prints one line of JSON: what cuInit said
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from dataclasses import dataclass

LIBRARY = "libcuda.so.1"
TIMEOUT = 60.0  # a driver in trouble can hang in cuInit; the servers must not wait for ever
MAX_OUTPUT = 4096


@dataclass(frozen=True)
class CudaState:
    driver: bool  # libcuda.so.1 could be loaded: an NVIDIA box
    result: int | None = None  # cuInit's CUresult; None: it never said (a hang, a crash)
    name: str = ""  # "CUDA_ERROR_UNKNOWN"
    message: str = ""  # "unknown error", or why nothing could be asked
    devices: int = 0

    @property
    def ok(self) -> bool:
        return not self.driver or (self.result == 0 and self.devices > 0)

    def describe(self) -> str:
        if not self.driver:
            return f"no CUDA driver ({self.message})"
        if self.result == 0:
            return f"CUDA initializes, {self.devices} GPU{'' if self.devices == 1 else 's'}"
        if self.result is None:
            return self.message
        said = f"{self.name or 'error'} {self.result}" + (f", {self.message}" if self.message else "")
        return f"cuInit failed ({said})"


def _text(function: object, result: int) -> str:
    text = ctypes.c_char_p()
    if function(result, ctypes.byref(text)) == 0 and text.value:  # type: ignore[operator]
        return text.value.decode("utf-8", "replace")
    return ""


def ask_here(library: str = LIBRARY) -> dict:
    """cuInit in this process: only ever called in the child."""
    try:
        cuda = ctypes.CDLL(library)
    except OSError as error:
        return {"driver": False, "message": str(error)}
    result = int(cuda.cuInit(0))
    devices = ctypes.c_int(0)
    if result == 0 and cuda.cuDeviceGetCount(ctypes.byref(devices)) != 0:
        devices.value = 0
    return {"driver": True, "result": result, "name": _text(cuda.cuGetErrorName, result),
            "message": _text(cuda.cuGetErrorString, result), "devices": devices.value}


def parse(output: str) -> CudaState:
    """The child's line; ValueError for anything else."""
    said = json.loads(output.strip().splitlines()[-1] if output.strip() else "")
    if not isinstance(said, dict) or not isinstance(said.get("driver"), bool):
        raise ValueError(f"not a CUDA state: {output.strip()[:200]!r}")
    result, devices = said.get("result"), said.get("devices", 0)
    if result is not None and (isinstance(result, bool) or not isinstance(result, int)):
        raise ValueError(f"result {result!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 0:
        raise ValueError(f"devices {devices!r}")
    return CudaState(said["driver"], result, str(said.get("name", ""))[:100],
                     str(said.get("message", ""))[:300], devices)


def check(timeout: float = TIMEOUT) -> CudaState:
    """Ask in a child process, which exits and lets go of the driver."""
    from sleepyllama.tools import bounded_output

    try:
        status, output = bounded_output([sys.executable, "-m", "sleepyllama.host.cuda"], timeout,
                                        MAX_OUTPUT)
    except subprocess.TimeoutExpired:
        return CudaState(True, None, message=f"cuInit did not return within {timeout:.0f} s")
    except (OSError, ValueError) as error:
        return CudaState(True, None, message=f"cannot ask CUDA: {error}")
    try:
        return parse(output)
    except ValueError:
        # the child crashed inside the driver (a segfault shows as a negative status)
        return CudaState(True, None, message=f"the CUDA check exited with status {status}: "
                         f"{output.strip()[-200:] or 'no output'}")


if __name__ == "__main__":
    print(json.dumps(ask_here()), flush=True)
