"""Where a server's model went (host/placement.py), from llama.cpp's own lines: the ones in
tests/data are what llama-server 0c1e570 prints (its CPU build prints the --gpu-layers warning
when given -ngl: test_real_llama_server.py runs it)."""

from __future__ import annotations

import json
from pathlib import Path

from sleepyllama import kinds
from sleepyllama.host import placement
from sleepyllama.host.placement import Placement

from conftest import TESTS, wait_for
from host.test_supervisor import fake_server, free_port, supervise, write_config

DATA = TESTS / "data" / "llama-server"
LLAMA = kinds.get("llama-server")


def fed(lines: str, command: list[str], last: tuple[int, int] | None = None) -> Placement:
    seen = Placement(LLAMA, command, last)
    for line in lines.splitlines():
        seen.feed(line)
    return seen


def test_asked_for_the_gpu_and_loaded_on_the_cpu() -> None:
    failed = (DATA / "output-cuda-failed.txt").read_text()
    assert fed(failed, ["llama-server", "-ngl", "99"]).problem() == (
        "on the CPU: CUDA failed to initialize (unknown error)")
    # not asked, never seen on a GPU here: a CPU box, nothing wrong
    assert fed(failed, ["llama-server"]).problem() == ""
    assert fed(failed, ["llama-server", "--n-gpu-layers=0"]).problem() == ""
    # not asked, but its last load here was on the GPU
    assert fed(failed, ["llama-server"], (33, 33)).problem().startswith("on the CPU")


def test_fewer_layers_on_the_gpu_than_last_time() -> None:
    offloaded = (DATA / "output-offloaded.txt").read_text()
    assert fed(offloaded, ["llama-server", "-ngl", "99"], (33, 33)).problem() == ""
    fewer = offloaded.replace("offloaded 33/33", "offloaded 10/33")
    assert fed(fewer, ["llama-server"], (33, 33)).problem() == (
        "with 10/33 layers on the GPU (33 at its last load here)")


def test_ollamas_discovery_line() -> None:
    line = ('time=2025-10-03T13:16:39.335+02:00 level=INFO source=gpu.go:396 msg="no compatible '
            'GPUs were discovered"')
    seen = Placement(kinds.get("ollama"), ["ollama", "serve"], (29, 29))
    seen.feed(line)
    assert seen.problem() == "on the CPU: no usable GPU found"


def test_the_last_load_is_kept_and_a_bad_file_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "placement.json"
    assert placement.load(path, "llama") is None
    placement.remember(path, "llama", (33, 33))
    assert placement.load(path, "llama") == (33, 33)
    for bad in ('{"llama": [40, 33]}', '{"llama": [NaN, 1]}', '[]', '{"llama": "33"}'):
        path.write_text(bad)
        assert placement.load(path, "llama") is None


def test_the_supervisor_says_ready_on_the_cpu(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, [*fake_server(port, "--metrics", "--print-file",
                                                  str(DATA / "output-cuda-failed.txt")),
                                     "-ngl", "99"], activity="llama-server")
    process, notify = supervise(tmp_path, config, STATE_DIRECTORY=str(state))
    try:
        wait_for(lambda: any("READY=1" in m for m in notify.messages), timeout=20, what="READY=1")
        expected = "ready on the CPU: CUDA failed to initialize (unknown error) · 0 requests in flight"
        wait_for(lambda: expected in notify.statuses(), what=f"STATUS {expected!r}")
        entries = [json.loads(line) for line in (state / "ledger.jsonl").read_text().splitlines()]
        assert [e["problem"] for e in entries if e["event"] == "server-degraded"] == [
            "on the CPU: CUDA failed to initialize (unknown error)"]
        assert not (state / "placement.json").exists()  # a CPU load is never the base
    finally:
        process.terminate()
        process.wait(10)
        notify.close()


def test_a_full_gpu_load_becomes_the_base_for_the_next(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    config = write_config(tmp_path, fake_server(port, "--metrics", "--print-file",
                                                str(DATA / "output-offloaded.txt")),
                          activity="llama-server")
    process, notify = supervise(tmp_path, config, STATE_DIRECTORY=str(state))
    try:
        wait_for(lambda: (state / "placement.json").exists(), timeout=20, what="placement.json")
        assert placement.load(state / "placement.json", "llama") == (33, 33)
        # STATUS comes after placement.json, on a socket a thread of the test reads: waited
        # for (found by a CI run: the file was there, the status not yet)
        wait_for(lambda: notify.statuses()[-1:] == ["ready · 0 requests in flight"],
                 timeout=20, what="STATUS ready")
    finally:
        process.terminate()
        process.wait(10)
        notify.close()
