"""Activity signals against real output shapes: nvidia-smi's, llama-server's /slots, logind's."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sleepyllama.config import ServerConfig
from sleepyllama.host.signals import (
    Activity,
    GpuSignal,
    InhibitorsSignal,
    ServersSignal,
    blocking_sleep_inhibitors,
    gpu_activity,
    parse_nvidia_smi,
    parse_slots,
)

from conftest import FAKE_SERVER, free_port, wait_for

DATA = Path(__file__).parent / "data" / "nvidia-smi"


def smi(name: str):
    return parse_nvidia_smi((DATA / name).read_text())


@pytest.mark.parametrize(("file", "mode", "activity", "words"), [
    ("one-gpu-idle.txt", "pstate", Activity.IDLE, "GPU 0 P8"),
    ("one-gpu-busy.txt", "pstate", Activity.BUSY, "GPU 0 at P2"),
    ("one-gpu-busy.txt", "utilization", Activity.BUSY, "GPU 0 at 97 %"),
    ("three-gpus-one-busy.txt", "pstate", Activity.BUSY, "GPU 2 at P0"),
    ("three-gpus-one-busy.txt", "utilization", Activity.BUSY, "GPU 2 at 41 %"),
    # a P100/V100 has only P0: pstate says busy forever, utilization tells the truth
    ("p100-only-p0.txt", "pstate", Activity.BUSY, "GPU 0 at P0"),
    ("p100-only-p0.txt", "utilization", Activity.IDLE, "GPU 0 0 %"),
    ("utilization-na.txt", "utilization", Activity.UNKNOWN, "reports no utilization"),
    ("pstate-na.txt", "pstate", Activity.UNKNOWN, "reports no pstate"),
])
def test_gpu_activity_from_real_output_shapes(file, mode, activity, words) -> None:
    reading = gpu_activity(smi(file), mode)
    assert reading.activity is activity
    assert words in reading.reason


def test_parse_several_gpus() -> None:
    gpus = smi("three-gpus-one-busy.txt")
    assert [(g.index, g.pstate, g.utilization) for g in gpus] == [(0, 8, 0), (1, 8, 0), (2, 0, 41)]


@pytest.mark.parametrize("file", ["driver-not-loaded.txt", "no-devices.txt"])
def test_error_text_is_not_parsed_as_gpus(file: str) -> None:
    with pytest.raises(ValueError):
        smi(file)


def fake_nvidia_smi(tmp_path: Path, output_file: str, status: int = 0) -> str:
    """A fake nvidia-smi that checks it was asked the real query, and prints captured output."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
[ "$1" = "--query-gpu=index,pstate,utilization.gpu" ] && [ "$2" = "--format=csv,noheader,nounits" ] \\
    || {{ echo "unexpected arguments: $*" >&2; exit 2; }}
cat {DATA / output_file}
exit {status}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_gpu_signal_runs_nvidia_smi(tmp_path: Path) -> None:
    assert GpuSignal("pstate", fake_nvidia_smi(tmp_path, "one-gpu-idle.txt")).read().activity is (
        Activity.IDLE)


@pytest.mark.parametrize(("file", "status", "words"), [
    ("driver-not-loaded.txt", 9, "status 9: NVIDIA-SMI has failed"),
    ("no-devices.txt", 6, "status 6: No devices were found"),
])
def test_gpu_signal_errors_count_as_unknown(tmp_path: Path, file: str, status: int, words: str) -> None:
    reading = GpuSignal("pstate", fake_nvidia_smi(tmp_path, file, status)).read()
    assert reading.activity is Activity.UNKNOWN
    assert words in reading.reason


def test_gpu_signal_without_nvidia_smi(tmp_path: Path) -> None:
    reading = GpuSignal("pstate", str(tmp_path / "nvidia-smi")).read()
    assert reading.activity is Activity.UNKNOWN and "not found" in reading.reason


def test_parse_slots_current_and_older_formats() -> None:
    assert parse_slots([{"id": 0, "is_processing": False}, {"id": 1, "is_processing": True}]) == (1, 2)
    assert parse_slots([{"id": 0, "state": 0}, {"id": 1, "state": 1}]) == (1, 2)
    with pytest.raises(ValueError):
        parse_slots({"error": "nope"})


def test_servers_signal_against_a_fake_llama_server(tmp_path: Path) -> None:
    port = free_port()
    server = ServerConfig("llama", ("llama-server",), f"http://127.0.0.1:{port}/health")
    signal = ServersSignal([server])
    assert signal.read().activity is Activity.IDLE  # not running counts as idle
    assert "llama: not running" in signal.read().reason
    process = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", str(port),
                                "--load-seconds", "1", "-np", "2"], stdout=subprocess.PIPE)
    try:
        wait_for(lambda: signal.read().reason != "llama: not running", what="the fake server")
        loading = signal.read()
        assert (loading.activity, loading.reason) == (Activity.BUSY, "llama: loading model")
        wait_for(lambda: signal.read().activity is Activity.IDLE, what="the model to load")
        assert signal.read().reason == "llama: 0/2 slots busy"
    finally:
        process.terminate()
        process.wait()


def test_inhibitors() -> None:
    listed = [
        ("sleep", "make", "build", "block", 1000, 4242),
        ("sleep", "NetworkManager", "prepare for sleep", "delay", 0, 777),  # delay: ignored
        ("shutdown:idle", "gdm", "login screen", "block", 0, 555),  # not sleep
        ("sleep", "sleepyllama", "our own", "block", 0, os.getpid()),  # our own: ignored
    ]
    assert blocking_sleep_inhibitors(listed, os.getpid()) == ["make (build)"]
    reading = InhibitorsSignal(lambda: listed, os.getpid()).read()
    assert reading.activity is Activity.BUSY and "make (build)" in reading.reason

    def broken() -> list:
        raise OSError("no bus")

    assert InhibitorsSignal(broken, 1).read().activity is Activity.UNKNOWN
