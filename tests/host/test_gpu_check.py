"""After a resume, before the servers start: does CUDA initialize, and is it healed where it
does not (host/cuda.py, host/gpu_check.py)? A stand-in libcuda.so.1 built with gcc (this machine
has no GPU) answers cuInit with what a file says: 0, 100 or 999."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sleepyllama import config, ledger
from sleepyllama.host import gpu_check
from sleepyllama.host.cuda import CudaState

REPORT = config.parse("")


REBOOT = config.parse('[resume]\ngpu_failure = "reboot"\n')


OK = CudaState(True, 0, "CUDA_SUCCESS", "no error", 1)


BROKEN = CudaState(True, 999, "CUDA_ERROR_UNKNOWN", "unknown error")


class Box:
    def __init__(self, answers: list[CudaState], held: list[str] | None = None,
                 reload_error: str = "") -> None:
        self.answers, self.held, self.reload_error = answers, held or [], reload_error
        self.gpus = True
        self.calls: list[str] = []

    def ops(self) -> gpu_check.GpuOps:
        def ask() -> CudaState:
            self.calls.append("ask")
            return self.answers.pop(0)

        def reload() -> str:
            self.calls.append("reload")
            return self.reload_error

        return gpu_check.GpuOps(ask=ask, holders=lambda: self.held, reload_uvm=reload,
                                reboot=lambda: self.calls.append("reboot"),
                                gpus_present=lambda: self.gpus)


def events(path: Path) -> list[str]:
    return [entry.event for entry in ledger.read(path)]


def test_a_failed_cuinit_is_healed_by_reloading_nvidia_uvm(tmp_path: Path) -> None:
    box, book = Box([BROKEN, OK]), tmp_path / "ledger.jsonl"
    assert gpu_check.run(REPORT, book, box.ops())
    assert box.calls == ["ask", "reload", "ask"]
    assert events(book) == ["gpu-healed"]


def test_a_held_module_is_not_reloaded_and_its_holders_are_named(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    box, book = Box([BROKEN], held=["ollama (pid 311)"]), tmp_path / "ledger.jsonl"
    assert not gpu_check.run(REPORT, book, box.ops())
    assert box.calls == ["ask"]
    assert "nvidia_uvm is in use by ollama (pid 311)" in caplog.text
    assert ledger.read(book)[-1].held_by == ("ollama (pid 311)",)


def test_still_failing_is_reported_and_reboots_once_when_asked(tmp_path: Path) -> None:
    book = tmp_path / "ledger.jsonl"
    reported = Box([BROKEN, BROKEN])
    assert not gpu_check.run(REPORT, book, reported.ops())
    assert "reboot" not in reported.calls and events(book) == ["gpu-failed"]
    first = Box([BROKEN, BROKEN])
    gpu_check.run(REBOOT, book, first.ops(), now=lambda: 1e9 + 1e6)
    assert first.calls[-1] == "reboot"
    # the box came back broken again an hour later: no second reboot
    again = Box([BROKEN, BROKEN])
    entries = ledger.read(book)
    gpu_check.run(REBOOT, book, again.ops(), now=lambda: entries[-1].at + 3600)
    assert "reboot" not in again.calls
    later = Box([BROKEN, BROKEN])
    gpu_check.run(REBOOT, book, later.ops(), now=lambda: entries[-1].at + 7 * 3600)
    assert later.calls[-1] == "reboot"


def test_off_asks_nothing(tmp_path: Path) -> None:
    box = Box([])
    assert gpu_check.run(config.parse('[resume]\ngpu_check = "off"\n'), tmp_path / "l", box.ops())
    assert box.calls == []


def test_holders_are_the_processes_with_the_device_open(tmp_path: Path) -> None:
    device = tmp_path / "nvidia-uvm"
    device.write_text("")
    holder = subprocess.Popen([sys.executable, "-c", f"f = open({str(device)!r}); "
                               "import sys; sys.stdout.write('open\\n'); sys.stdout.flush(); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        found = gpu_check.holders(str(device))
        assert any(f"(pid {holder.pid})" in one for one in found), found
    finally:
        holder.kill()
        holder.wait()
    assert gpu_check.holders(str(device)) == []


def test_no_device_on_a_machine_without_an_nvidia_gpu_is_nothing_to_heal(tmp_path: Path) -> None:
    no_device = CudaState(True, 100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected")
    cpu_box = Box([no_device])
    cpu_box.gpus = False
    assert gpu_check.run(REPORT, tmp_path / "ledger.jsonl", cpu_box.ops())
    assert cpu_box.calls == ["ask"]
    # the same answer where a GPU's device node is there: it fell off after the resume
    gone = Box([no_device, no_device])
    assert not gpu_check.run(REPORT, tmp_path / "ledger.jsonl", gone.ops())
    assert gone.calls == ["ask", "reload", "ask"]
