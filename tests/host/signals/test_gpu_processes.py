"""Programs on the GPU that are not our servers (host/signals/gpu_processes.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.gpu_processes import (
    GpuProcess,
    GpuProcessesSignal,
    foreign,
    is_ours,
    parse_compute_apps,
)

# nvidia-smi --query-compute-apps=pid,process_name,used_gpu_memory --format=csv,noheader,nounits
OUTPUT = ("4242, /home/ann/ComfyUI/venv/bin/python3, 5120\n"
          "5100, /opt/llama/llama-server, 20480\n"
          "6001, /opt/odd,dir/app, [N/A]\n")
OURS = "0::/system.slice/system-sleepyllama\\x2dserver.slice/sleepyllama-server@llama.service\n"
THEIRS = "0::/user.slice/user-1000.slice/session-4.scope\n"


def test_parse_the_documented_fields_with_a_comma_in_a_path() -> None:
    assert parse_compute_apps(OUTPUT) == [
        GpuProcess(4242, "/home/ann/ComfyUI/venv/bin/python3", 5120),
        GpuProcess(5100, "/opt/llama/llama-server", 20480),
        GpuProcess(6001, "/opt/odd,dir/app", None)]
    assert parse_compute_apps("") == []
    with pytest.raises(ValueError):
        parse_compute_apps("<html>")


def test_our_servers_by_their_units_cgroup_and_exited_processes_left_out() -> None:
    assert is_ours(OURS) and not is_ours(THEIRS)
    cgroups = {4242: THEIRS, 5100: OURS}  # 6001 exited since nvidia-smi looked
    others = foreign(parse_compute_apps(OUTPUT), cgroups.get)
    assert [process.pid for process in others] == [4242]


def test_the_signal_through_a_stand_in_nvidia_smi(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncase \"$1\" in --query-compute-apps=*) printf '%s' '{OUTPUT}';; "
                   "*) exit 9;; esac\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    cgroups = {4242: THEIRS, 5100: OURS}
    busy = GpuProcessesSignal(str(smi), cgroups.get).read()
    assert busy.activity is Activity.BUSY
    assert busy.reason == "GPU used by /home/ann/ComfyUI/venv/bin/python3 (pid 4242, 5120 MiB)"
    only_ours = GpuProcessesSignal(str(smi), lambda pid: OURS).read()
    assert only_ours.activity is Activity.IDLE
    missing = GpuProcessesSignal(str(tmp_path / "none")).read()
    assert missing.activity is Activity.UNKNOWN
