"""Does CUDA initialize (host/cuda.py), asked through the real ABI in a child process: a
stand-in libcuda.so.1 built with gcc (this machine has no GPU) answers cuInit with what a file
says: 0, 100 or 999. What the check does with the answer: tests/host/test_gpu_check.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleepyllama.host import cuda


def test_cuinit_through_the_real_abi_in_a_child(fake_libcuda: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    result = tmp_path / "result"
    monkeypatch.setenv("LD_LIBRARY_PATH", str(fake_libcuda.parent))
    monkeypatch.setenv("SLEEPYLLAMA_FAKE_CUDA", str(result))
    result.write_text("999\n")
    broken = cuda.check()
    assert (broken.driver, broken.result, broken.ok) == (True, 999, False)
    assert broken.describe() == "cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)"
    result.write_text("100\n")
    assert cuda.check().describe() == ("cuInit failed (CUDA_ERROR_NO_DEVICE 100, no "
                                       "CUDA-capable device is detected)")
    result.write_text("0\n")
    assert cuda.check().describe() == "CUDA initializes, 1 GPU"


def test_a_box_without_the_driver_has_nothing_to_check(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))  # no libcuda.so.1 there, nor on CI
    state = cuda.check()
    if state.driver:
        pytest.skip("this machine has a real libcuda.so.1")
    assert state.ok and "libcuda.so.1" in state.message


def test_a_child_that_dies_in_the_driver_is_a_failure_not_a_crash() -> None:
    with pytest.raises(ValueError):
        cuda.parse("Segmentation fault")
    with pytest.raises(ValueError):
        cuda.parse('{"driver": true, "result": "999"}')
