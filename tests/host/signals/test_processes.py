"""Programs the user names ([idle] processes, host/signals/processes.py): by name or program
file, and a real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.processes import ProcessesSignal, matching, running


def test_processes_by_name_or_program_file_name() -> None:
    processes = [(311, "make", "make"), (312, "python3", "/usr/bin/python3"),
                 (313, "llama-quantize", "/opt/llama/llama-quantize")]
    assert matching(["make"], processes) == ["make (pid 311)"]
    assert matching(["llama-quantize"], processes) == ["llama-quantize (pid 313)"]
    assert matching(["ffmpeg"], processes) == []


def test_a_real_process_of_that_name_keeps_the_box_up(tmp_path: Path) -> None:
    program = tmp_path / "sl-test-render"
    program.symlink_to(sys.executable)
    with subprocess.Popen([str(program), "-c", "import time; time.sleep(60)"]) as child:
        try:
            assert any(pid == child.pid for pid, _comm, _argv0 in running())
            reading = ProcessesSignal(["sl-test-render"]).read()
            assert reading.activity is Activity.BUSY and f"pid {child.pid}" in reading.reason
        finally:
            child.kill()
    assert ProcessesSignal(["sl-test-render"]).read().activity is Activity.IDLE
