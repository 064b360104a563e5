"""NVIDIA's suspend settings as its README gives them (host/nvidia_power.py)."""

from __future__ import annotations

from sleepyllama.host.nvidia_power import UNITS, advice, parse_params

PROPRIETARY = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024"
OPEN = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  595.45.04  Release Build"
PARAMS = ('ResmanDebugLevel: 4294967295\nPreserveVideoMemoryAllocations: 0\n'
          'TemporaryFilePath: ""\nUseKernelSuspendNotifiers: 0\n')
BOTH_ON = {unit: True for unit in UNITS}
GIB = 1 << 30


def test_parse_the_drivers_parameters() -> None:
    params = parse_params('TemporaryFilePath: "/var/tmp"\nEnableMSI: 1\n')
    assert params == {"TemporaryFilePath": "/var/tmp", "EnableMSI": "1"}


def test_what_each_driver_needs() -> None:
    proprietary = advice(parse_params(PARAMS), PROPRIETARY, BOTH_ON, None, None)
    assert len(proprietary) == 1 and "NVreg_PreserveVideoMemoryAllocations=1" in proprietary[0]
    opened = advice(parse_params(PARAMS), OPEN, {}, None, None)
    assert len(opened) == 1 and "NVreg_UseKernelSuspendNotifiers=1" in opened[0]
    notifiers = parse_params(PARAMS.replace("UseKernelSuspendNotifiers: 0", "UseKernelSuspendNotifiers: 1"))
    assert advice(notifiers, OPEN, {}, None, None) == []


def test_preserving_needs_the_units_and_room_for_the_video_memory() -> None:
    preserve = parse_params(PARAMS.replace("Allocations: 0", "Allocations: 1"))
    assert advice(preserve, PROPRIETARY, BOTH_ON, 100 * GIB, 20 * GIB) == []
    units_off = advice(preserve, PROPRIETARY, {"nvidia-resume.service": True}, None, None)
    assert units_off == ["NVreg_PreserveVideoMemoryAllocations=1 needs nvidia-suspend.service "
                         "enabled (sudo systemctl enable nvidia-suspend.service), or the resume fails"]
    small = advice(preserve, PROPRIETARY, BOTH_ON, 2 * GIB, 20 * GIB)
    assert len(small) == 1 and "(/tmp) has 2048 MiB free" in small[0]
