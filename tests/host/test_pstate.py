"""GPU power control: matching nvidia-smi's GPUs to NVAPI's by PCI bus, and transitions only."""

import logging

import pytest

from sleepyllama.host.pstate import (
    AUTOMATIC,
    LOW,
    GpuPower,
    bus_number,
    nvapi_indexes,
    parse_smi_gpus,
    visible_gpus,
)

# real shape of `nvidia-smi --query-gpu=index,uuid,pci.bus_id --format=csv,noheader`
SMI = """0, GPU-2c4e1f00-aaaa-bbbb-cccc-000000000001, 00000000:01:00.0
1, GPU-2c4e1f00-aaaa-bbbb-cccc-000000000002, 00000000:21:00.0
2, GPU-2c4e1f00-aaaa-bbbb-cccc-000000000003, 00000000:4C:00.0
"""


def test_bus_numbers_from_pci_bus_ids() -> None:
    assert bus_number("00000000:4C:00.0") == 0x4C
    assert [gpu[2] for gpu in parse_smi_gpus(SMI)] == [0x01, 0x21, 0x4C]


def test_nvapi_order_differs_and_is_matched_by_bus() -> None:
    gpus = parse_smi_gpus(SMI)
    nvapi_buses = [0x21, 0x4C, 0x01]  # NVAPI enumerates in an order of its own
    assert nvapi_indexes(gpus, nvapi_buses) == [2, 0, 1]
    with pytest.raises(LookupError, match="bus 4c"):
        nvapi_indexes(gpus, [0x21, 0x01])


def test_cuda_visible_devices_by_index_or_uuid() -> None:
    gpus = parse_smi_gpus(SMI)
    assert [g[0] for g in visible_gpus(gpus, None)] == [0, 1, 2]
    assert [g[0] for g in visible_gpus(gpus, "2,0")] == [0, 2]
    assert [g[0] for g in visible_gpus(gpus, "GPU-2c4e1f00-aaaa-bbbb-cccc-000000000002")] == [1]


def test_only_transitions_reach_nvapi_and_errors_turn_control_off(caplog) -> None:
    calls: list[tuple[list[int], int]] = []
    power = GpuPower(lambda ids, pstate: calls.append((ids, pstate)), [2, 0])
    for idle in (True, True, False, False, True):
        power.set_idle(idle)
    assert calls == [([2, 0], LOW), ([2, 0], AUTOMATIC), ([2, 0], LOW)]

    def broken(ids: list[int], pstate: int) -> None:
        raise OSError("NVAPI went away")

    failing = GpuPower(broken, [0])
    with caplog.at_level(logging.WARNING):
        failing.set_idle(True)
        failing.set_idle(False)
    assert caplog.text.count("GPU power control is off") == 1


def test_without_the_package_one_warning_and_serving_goes_on(caplog) -> None:
    # nvidia-pstate is an optional extra, not installed for the tests
    with caplog.at_level(logging.WARNING):
        assert GpuPower.open() is None
    assert "GPU power control is off" in caplog.text
