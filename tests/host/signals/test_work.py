"""Work the user names (host/signals/processes.py, connections.py, load.py): real /proc formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.connections import ConnectionsSignal, established_local_ports
from sleepyllama.host.signals.load import LoadSignal, five_minute_load
from sleepyllama.host.signals.processes import ProcessesSignal, matching, running

from conftest import TESTS

TCP = (TESTS / "data" / "proc" / "net-tcp.txt").read_text()


def test_established_connections_by_local_port() -> None:
    # a listener on 22 (0A), an SSH session, an SMB copy, one SMB connection closing (06)
    assert established_local_ports(TCP) == [22, 445]
    reading = ConnectionsSignal([445, 2049], lambda: [TCP]).read()
    assert reading.activity is Activity.BUSY and reading.reason == "1 connection on port 445"
    assert ConnectionsSignal([2049], lambda: [TCP]).read().activity is Activity.IDLE
    assert ConnectionsSignal([22], lambda: ["garbage\nnot a table"]).read().activity is (
        Activity.UNKNOWN)


def test_this_machines_own_table_sees_a_real_connection() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), server.accept()[0]:
            assert ConnectionsSignal([port]).read().activity is Activity.BUSY


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


def test_load_above_the_threshold() -> None:
    assert five_minute_load("0.52 2.31 1.10 2/312 4242\n") == 2.31
    assert LoadSignal(2.0, lambda: "0.52 2.31 1.10 2/312 4242\n").read().activity is Activity.BUSY
    assert LoadSignal(3.0, lambda: "0.52 2.31 1.10 2/312 4242\n").read().activity is Activity.IDLE
    assert LoadSignal(2.0, lambda: "").read().activity is Activity.UNKNOWN
    assert LoadSignal(1e9).read().activity is Activity.IDLE  # this machine's own /proc/loadavg


@pytest.mark.parametrize(("text", "error"), [
    ('processes = "make"', "list of program names"),
    ('processes = ["/usr/bin/make"]', "list of program names"),
    ("ports = [0]", "port number"),
    ("load = nan", "a number"),
    ('woken_by = "plug"', "lan"),
])
def test_bad_idle_keys_name_the_key(text: str, error: str) -> None:
    with pytest.raises(config.ConfigError, match=error):
        config.parse(f"[idle]\n{text}\n")
