"""The GPUs as the idle check reads them (host/signals/gpu.py): nvidia-smi's real output shapes,
its errors and its bounds, and amdgpu's sysfs."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.host.signals.gpu import AmdGpuSignal, GpuSignal, gpu_activity, parse_nvidia_smi

from conftest import TESTS

DATA = TESTS / "data" / "nvidia-smi"


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
    # a real H200 (captured on a lent GPU): P0 with nothing running, P0 at 0 % between requests
    ("h200-no-process.txt", "pstate", Activity.BUSY, "GPU 0 at P0"),
    ("h200-model-loaded-between-requests.txt", "pstate", Activity.BUSY, "GPU 0 at P0"),
    ("h200-model-loaded-between-requests.txt", "utilization", Activity.IDLE, "GPU 0 0 %"),
    ("h200-under-load.txt", "pstate", Activity.BUSY, "GPU 0 at P0"),
    ("h200-under-load.txt", "utilization", Activity.BUSY, "GPU 0 at 94 %"),
])
def test_gpu_activity_from_real_output_shapes(file, mode, activity, words) -> None:
    reading = gpu_activity(smi(file), mode)
    assert reading.activity is activity
    assert words in reading.reason


def test_a_gpu_stuck_in_p0_names_the_fix_and_only_when_it_alone_keeps_the_box_up() -> None:
    from sleepyllama.host.idle import Action, decide

    stuck = gpu_activity(smi("h200-model-loaded-between-requests.txt"), "pstate")
    assert 'gpu = "utilization"' in stuck.hint
    assert smi("h200-model-loaded-between-requests.txt")[0].power == 122.69
    assert gpu_activity(smi("h200-under-load.txt"), "pstate").hint == ""  # it works
    assert gpu_activity(smi("one-gpu-busy.txt"), "pstate").hint == ""
    servers_idle = Reading("servers", Activity.IDLE, "llama: nothing in flight")
    verdict = decide([stuck, servers_idle], None, now=10.0, boot_id="b", timeout=60.0)
    assert verdict.action is Action.STAY_AWAKE and 'gpu = "utilization"' in verdict.reason
    serving = Reading("servers", Activity.BUSY, "llama: 1 request in flight")
    verdict = decide([stuck, serving], None, now=10.0, boot_id="b", timeout=60.0)
    assert "utilization" not in verdict.reason  # the server explains it: no advice


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
[ "$1" = "--query-gpu=index,pstate,utilization.gpu,power.draw" ] \\
    && [ "$2" = "--format=csv,noheader,nounits" ] \\
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


def test_power_drawn_is_read_when_reported(tmp_path: Path) -> None:
    assert [gpu.power for gpu in smi("two-gpus-idle-with-power.txt")] == [21.37, 18.02]
    assert smi("one-gpu-idle.txt")[0].power is None  # the older three-column shape still reads
    assert parse_nvidia_smi("0, P8, 0, [N/A]\n")[0].power is None
    with pytest.raises(ValueError):
        parse_nvidia_smi("0, P8, 0, lots\n")
    signal = GpuSignal("pstate", fake_nvidia_smi(tmp_path, "two-gpus-idle-with-power.txt"))
    assert signal.read().activity is Activity.IDLE
    assert sum(gpu.power or 0 for gpu in signal.last) == pytest.approx(39.39)


def test_gpu_signal_without_nvidia_smi(tmp_path: Path) -> None:
    reading = GpuSignal("pstate", str(tmp_path / "nvidia-smi")).read()
    assert reading.activity is Activity.UNKNOWN and "not found" in reading.reason


def test_amdgpu_from_sysfs(tmp_path: Path) -> None:
    for card, percent in (("card0", "0\n"), ("card1", "3\n")):
        (tmp_path / card / "device").mkdir(parents=True)
        (tmp_path / card / "device" / "gpu_busy_percent").write_text(percent)
    (tmp_path / "card0-DP-1").mkdir()  # connectors live beside the cards: not GPUs
    signal = AmdGpuSignal(tmp_path)
    assert signal.read() == Reading("gpu", Activity.IDLE, "card0 0 %, card1 3 %")
    (tmp_path / "card1" / "device" / "gpu_busy_percent").write_text("87\n")
    assert signal.read() == Reading("gpu", Activity.BUSY, "card1 at 87 %")
    (tmp_path / "card1" / "device" / "gpu_busy_percent").write_text("garbage\n")
    assert signal.read().activity is Activity.UNKNOWN
    assert AmdGpuSignal(tmp_path / "nothing").read().activity is Activity.UNKNOWN


def test_nvidia_smi_output_is_bounded_in_size_and_time(tmp_path: Path) -> None:
    """Through tools.bounded_output (tests/test_tools.py): a chatty one reads unknown."""
    chatty = tmp_path / "chatty"
    chatty.write_text("#!/bin/sh\nhead -c 5000000 /dev/zero\n")
    chatty.chmod(0o755)
    reading = GpuSignal("pstate", nvidia_smi=str(chatty)).read()
    assert reading.activity is Activity.UNKNOWN and "more than" in reading.reason
