"""Idle GPUs to P8 without patching llama.cpp, through the nvidia-pstate package (NVAPI).

While no request is in flight on a server its GPUs are forced into P8 (low power); as soon as one
arrives, and when the server stops, they go back to 16 (the driver decides). NVAPI numbers GPUs
in its own order, not nvidia-smi's, so GPUs are matched by PCI bus number. Without the package,
libnvidia-api.so.1 or a GPU, GpuPower.open() warns once and returns None: serving goes on.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

LOW, AUTOMATIC = 8, 16
NVAPI_GPU_GET_BUS_ID = 0x1BE0B8E5  # NvAPI_GPU_GetBusId(handle, NvU32 *busId): not in the package


def bus_number(pci_bus_id: str) -> int:
    """The bus of nvidia-smi's pci.bus_id "00000000:01:00.0" (domain:bus:device.function)."""
    return int(pci_bus_id.strip().split(":")[-2], 16)


def parse_smi_gpus(output: str) -> list[tuple[int, str, int]]:
    """(index, uuid, bus) from `nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv,noheader`."""
    gpus = []
    for line in output.strip().splitlines():
        index, uuid, bus_id = (field.strip() for field in line.split(","))
        gpus.append((int(index), uuid, bus_number(bus_id)))
    return gpus


def visible_gpus(smi_gpus: Sequence[tuple[int, str, int]], cuda_visible_devices: str | None
                 ) -> list[tuple[int, str, int]]:
    """The GPUs the server may use: CUDA_VISIBLE_DEVICES as nvidia-smi indexes or GPU UUIDs
    (set CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA's indexes are nvidia-smi's), else all."""
    if not cuda_visible_devices:
        return list(smi_gpus)
    wanted = [item.strip() for item in cuda_visible_devices.split(",") if item.strip()]
    return [gpu for gpu in smi_gpus if str(gpu[0]) in wanted or gpu[1] in wanted]


def nvapi_indexes(gpus: Sequence[tuple[int, str, int]], nvapi_buses: Sequence[int]) -> list[int]:
    """NVAPI's index for each GPU, matched by bus number; LookupError when one has no match."""
    indexes = []
    for index, _uuid, bus in gpus:
        if bus not in nvapi_buses:
            raise LookupError(f"NVAPI has no GPU on PCI bus {bus:02x} (nvidia-smi's GPU {index})")
        indexes.append(nvapi_buses.index(bus))
    return indexes


def _nvapi_buses() -> list[int]:
    """PCI bus of each GPU in NVAPI's order, through nvidia-pstate's own NVAPI binding."""
    from nvidia_pstate import nvapi

    if nvapi.NvAPI_Initialize() != 0:
        raise OSError("NvAPI_Initialize failed")
    handles = (ctypes.c_void_p * 64)()
    count = ctypes.c_int32()
    if nvapi.NvAPI_EnumPhysicalGPUs(handles, ctypes.pointer(count)) != 0:
        raise OSError("NvAPI_EnumPhysicalGPUs failed")
    get_bus_id = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))(
        nvapi.nvapi_QueryInterface(NVAPI_GPU_GET_BUS_ID))
    buses = []
    for handle in handles[: count.value]:
        bus = ctypes.c_uint32()
        if get_bus_id(handle, ctypes.byref(bus)) != 0:
            raise OSError("NvAPI_GPU_GetBusId failed")
        buses.append(bus.value)
    return buses


class GpuPower:
    def __init__(self, set_pstate: Callable[[list[int], int], None], nvapi_ids: list[int]) -> None:
        self.set_pstate, self.nvapi_ids = set_pstate, nvapi_ids
        self.idle: bool | None = None

    @classmethod
    def open(cls, nvidia_smi: str = "nvidia-smi") -> GpuPower | None:
        try:
            from nvidia_pstate.pstate_nvapi import set_pstate

            output = subprocess.run(
                [nvidia_smi, "--query-gpu=index,uuid,pci.bus_id", "--format=csv,noheader"],
                capture_output=True, text=True, check=True, timeout=15).stdout
            gpus = visible_gpus(parse_smi_gpus(output), os.environ.get("CUDA_VISIBLE_DEVICES"))
            ids = nvapi_indexes(gpus, _nvapi_buses())
        except ImportError:
            log.warning("pstate = \"auto\" needs the nvidia-pstate package "
                        "(pip install 'sleepyllama[pstate]'): GPU power control is off")
            return None
        except (OSError, ValueError, LookupError, subprocess.SubprocessError) as error:
            log.warning("cannot control GPU pstates (%s; nvidia-pstate needs the driver's "
                        "libnvidia-api.so.1): GPU power control is off", error)
            return None
        log.info("GPU power control on: NVAPI GPUs %s go to P8 while no request is in flight", ids)
        return cls(lambda indexes, pstate: set_pstate(indexes, pstate, silent=True), ids)

    def set_idle(self, idle: bool) -> None:
        """Only transitions reach NVAPI; an error turns control off with one warning."""
        if idle == self.idle or not self.nvapi_ids:
            return
        try:
            self.set_pstate(list(self.nvapi_ids), LOW if idle else AUTOMATIC)
        except Exception as error:  # a driver hiccup must not stop serving
            log.warning("setting GPU pstate failed (%s): GPU power control is off", error)
            self.nvapi_ids = []
            return
        self.idle = idle
        log.info("GPUs %s %s", self.nvapi_ids, "to P8: no request in flight" if idle else
                 "back to automatic pstate")
