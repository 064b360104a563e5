"""The GPU box's figures for node_exporter's textfile collector, written by each idle check."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sleepyllama import config, ledger
from sleepyllama.config import EnergyConfig
from sleepyllama.host import textfile
from sleepyllama.host.idle_check import check
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.host.signals.gpu import Gpu

from host.stand_ins import BOOT, Recorder


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(path.read_text())
            for sample in family.samples}


def test_each_idle_check_writes_its_figures_for_node_exporter(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\necho "0, P8, 0, 21.5"\necho "1, P0, 93, 250.0"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    exported = tmp_path / "node-exporter"
    exported.mkdir()
    box = config.parse('[idle]\ntimeout = "10m"\nservers = false\ninhibitors = false\n'
                       'sessions = false\ngpu_processes = false\n'
                       f'[metrics]\ntextfile_dir = "{exported}"\n')
    state_file = tmp_path / "state" / "idle.json"
    check(box, state_file, dry_run=False, ops=Recorder().ops(), boot_id=BOOT, now=0.0)
    figures = samples(exported / "sleepyllama.prom")
    assert figures[("sleepyllama_busy", (("signal", "gpu"),))] == 1  # GPU 1 is in P0
    assert figures[("sleepyllama_gpu_power_watts", (("gpu", "0"),))] == 21.5
    assert figures[("sleepyllama_gpu_power_watts", (("gpu", "1"),))] == 250.0
    assert figures[("sleepyllama_idle_seconds", ())] == 0
    assert figures[("sleepyllama_suspends_total", ())] == 0
    assert (exported / "sleepyllama.prom").stat().st_mode & 0o777 == 0o644  # node_exporter's
    # "" (the default): the idle unit's own StateDirectory
    check(config.parse(box_text := '[idle]\ngpu = "off"\nservers = false\ninhibitors = false\n'
                       'sessions = false\n'), state_file, dry_run=False, ops=Recorder().ops(),
          boot_id=BOOT, now=30.0)
    assert (state_file.parent / "sleepyllama.prom").exists()
    off = tmp_path / "off" / "idle.json"
    check(config.parse(box_text + '[metrics]\ntextfile_dir = "off"\n'), off, dry_run=False,
          ops=Recorder().ops(), boot_id=BOOT, now=0.0)
    assert not (off.parent / "sleepyllama.prom").exists()


def test_sleeps_their_time_and_what_they_saved_come_from_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    for entry in (ledger.Sleep(reason="idle"), ledger.Suspend(at=1000.0),
                  ledger.Resume(at=1000.0 + 7200)):  # two hours asleep
        ledger.append(path, entry)
    entries = ledger.read(path)
    readings = [Reading("servers", Activity.IDLE, "idle"), Reading("sessions", Activity.UNKNOWN,
                                                                     "logind did not answer")]
    registry = textfile.figures(readings, 120.0, [Gpu(0, 8, 0, 20.0)], {"llama": True, "tts": False},
                                entries, EnergyConfig(base_watts=80.0, asleep_watts=2.0),
                                {"watts": 20.0, "samples": 5}, now=10_000.0)
    textfile.write(tmp_path, registry)
    figures = samples(tmp_path / "sleepyllama.prom")
    assert figures[("sleepyllama_asleep_seconds_total", ())] == 7200
    assert figures[("sleepyllama_suspends_total", ())] == 1
    assert figures[("sleepyllama_energy_saved_kwh_total", ())] == pytest.approx(2 * 98 / 1000)
    assert figures[("sleepyllama_busy", (("signal", "servers"),))] == 0
    assert figures[("sleepyllama_busy", (("signal", "sessions"),))] == 1  # unknown is busy
    assert figures[("sleepyllama_server_ready", (("server", "llama"),))] == 1
    assert figures[("sleepyllama_server_ready", (("server", "tts"),))] == 0
    assert figures[("sleepyllama_idle_seconds", ())] == 120


def test_a_scrape_never_reads_half_a_file(tmp_path: Path) -> None:
    """node_exporter reads the file whenever it is scraped: each read must be a whole one."""
    registries = [textfile.figures([Reading(f"signal{i}", Activity.IDLE, "")
                                    for i in range(count)], 0.0, [], {}, [], EnergyConfig(), None)
                  for count in (1, 400)]
    done = threading.Event()

    def writer() -> None:
        for round_ in range(300):
            textfile.write(tmp_path, registries[round_ % 2])
        done.set()

    textfile.write(tmp_path, registries[0])
    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set():
        text = (tmp_path / "sleepyllama.prom").read_text()
        busy = [line for line in text.splitlines() if line.startswith("sleepyllama_busy{")]
        assert len(busy) in (1, 400) and text.endswith("\n"), len(busy)
        reads += 1
    thread.join()
    assert reads > 1


def test_textfile_dir_must_be_absolute() -> None:
    for bad in ('"relative/dir"', "5", '"/a\\u0000b"'):
        with pytest.raises(config.ConfigError, match="textfile_dir"):
            config.parse(f"[metrics]\ntextfile_dir = {bad}\n")
    assert config.parse('[metrics]\ntextfile_dir = "/var/lib/node-exporter"\n').metrics.textfile_dir


def test_two_writes_of_the_same_figures_are_the_same_file(tmp_path: Path) -> None:
    """Found with promtool and a real Prometheus: the _created series of every counter
    changed at every write (every 30 s), as if each counter were new."""
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, ledger.Suspend())
    entries = ledger.read(path)
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        directory.mkdir()
        textfile.write(directory, textfile.figures([], 0.0, [], {}, entries,
                                                   EnergyConfig(base_watts=50.0), None,
                                                   now=10_000.0))
    written = (first / "sleepyllama.prom").read_text()
    assert "_created" not in written
    assert written == (second / "sleepyllama.prom").read_text()
    assert ("sleepyllama_energy_saved_kwh_total", ()) in samples(first / "sleepyllama.prom")
