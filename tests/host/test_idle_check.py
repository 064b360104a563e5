"""The idle checker's orchestration: verdict, state file, and the sleep sequence with the system
operations replaced (no systemd here; the container tests run the real ones)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sleepyllama import config, ledger
from sleepyllama.host import state
from sleepyllama.host.idle import Action
from sleepyllama.host.idle_check import check

from host.stand_ins import BOOT, QUIET, QUIET_TEXT, Recorder, checks_every_30s, stored


def test_idle_long_enough_stops_suspends_and_restarts_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    assert check(QUIET, path, dry_run=False, ops=Recorder().ops(), boot_id=BOOT, now=100.0) is (
        Action.STAY_AWAKE)
    assert stored(path)["idle_since"] == 100.0
    recorder = Recorder()
    assert checks_every_30s(QUIET, path, 130.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["arm", "stop", "suspend"]
    assert stored(path)["idle_since"] is None
    assert stored(path)["reason"].startswith("asked logind to suspend (idle for 10m")
    asked = [entry for entry in ledger.read(tmp_path / "ledger.jsonl") if entry.event == "sleep"]
    assert len(asked) == 1 and asked[0].reason.startswith("idle for 10m")  # type: ignore[attr-defined]


def test_the_resume_s_word_is_not_overwritten_by_the_check_that_slept(tmp_path: Path) -> None:
    """Found by trying it: status read "stay awake: suspended" after a sleep. logind's
    Suspend returns at once; the check froze with the box and, at resume, wrote its "suspended"
    over what the resume hook had just said."""
    path = tmp_path / "idle.json"
    recorder = Recorder()
    ops = recorder.ops()

    def suspend_and_resume(action: str) -> None:
        ops.sleep(action)
        state.reset(path, BOOT, "resumed from suspend")  # the hook, before the check goes on

    assert checks_every_30s(QUIET, path, 100.0, 800.0,
                            dataclasses.replace(ops, sleep=suspend_and_resume)) is Action.SLEEP
    assert stored(path)["reason"] == "resumed from suspend"


def test_dry_run_keeps_the_clock_and_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    state.write(path, {"boot_id": BOOT, "idle_since": 0.0, "looked_at": 890.0})
    recorder = Recorder()
    assert check(QUIET, path, dry_run=True, ops=recorder.ops(), boot_id=BOOT, now=900.0) is (
        Action.SLEEP)
    assert recorder.calls == []
    assert stored(path)["idle_since"] == 0.0 and stored(path)["verdict"] == "sleep"


def test_a_server_of_kind_none_lets_the_box_sleep(tmp_path: Path) -> None:
    whisper = config.parse('[server.whisper]\ncommand = ["/opt/whisper.cpp/whisper-server"]\n'
                           '[idle]\ntimeout = "10m"\ngpu = "off"\ninhibitors = false\nsessions = false\n')
    path = tmp_path / "idle.json"
    recorder = Recorder()
    assert checks_every_30s(whisper, path, 100.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["arm", "stop", "suspend"]


@pytest.mark.parametrize("text", [
    "{not json",
    "[]",
    '{"boot_id": "boot-1", "idle_since": NaN}',
    '{"boot_id": "boot-1", "idle_since": "yesterday"}',
    '{"boot_id": 7, "idle_since": 3.0}',
    '{"boot_id": "boot-1", "idle_since": 3.0, "looked_at": Infinity}',
    '{"boot_id": "boot-1", "idle_since": 3.0, "counters": "x"}',
    '{"boot_id": "boot-1", "idle_since": 3.0, "counters": {"llama": {"work": [1], "epoch": "", '
    '"at": 1}}}',
])
def test_a_malformed_state_file_starts_the_clock_again(tmp_path: Path, text: str) -> None:
    """Valid JSON of the wrong shape made every idle check exit 1: the box never slept."""
    path = tmp_path / "idle.json"
    path.write_text(text)
    assert check(QUIET, path, dry_run=False, ops=Recorder().ops(), boot_id=BOOT, now=50.0) is (
        Action.STAY_AWAKE)
    loaded = state.load(path)[0]
    assert loaded is not None and loaded.boot_id == BOOT and loaded.idle_since in (3.0, 50.0)
    assert state.counters(state.load(path)[1]) == {}


def test_two_checks_at_once_never_share_a_temporary_file(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "idle.json"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda now: check(QUIET, path, dry_run=True, boot_id=BOOT, now=now),
                      [float(n) for n in range(200)]))
    assert stored(path)["boot_id"] == BOOT
    assert [p.name for p in tmp_path.iterdir()] == ["idle.json"]  # no temporary left behind


def test_the_gpus_idle_power_is_averaged_over_idle_checks(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    watts = tmp_path / "watts"
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f'#!/bin/sh\necho "0, P8, 0, $(cat {watts})"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    gpu = config.parse('[idle]\ntimeout = "10m"\nservers = false\ninhibitors = false\n'
                       'sessions = false\ngpu_processes = false\n')
    path = tmp_path / "idle.json"
    for now, drawn in ((0.0, "20.0"), (30.0, "30.0"), (60.0, "40.0")):
        watts.write_text(drawn)
        check(gpu, path, dry_run=True, boot_id=BOOT, now=now)
    # the first check starts the idle clock (idle for 0 s): only the two after it count
    assert stored(path)["idle_watts"] == {"watts": 35.0, "samples": 2}
    watts.write_text("[N/A]")
    check(gpu, path, dry_run=True, boot_id=BOOT, now=90.0)
    assert stored(path)["idle_watts"] == {"watts": 35.0, "samples": 2}  # kept, not spoilt


def test_woken_by_other_never_asks_about_wake_on_lan(tmp_path: Path) -> None:
    other = config.parse(QUIET_TEXT + 'woken_by = "other"\n')
    recorder = Recorder(cannot_wake=["eth0 cannot wake the box"])
    assert checks_every_30s(other, tmp_path / "idle.json", 100.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["stop", "suspend"]


def test_a_dry_run_never_promises_a_sleep_that_will_not_come(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    recorder = Recorder(cannot_wake=["eth0 cannot wake the box on a magic packet (no Wake-on-LAN)"])
    path = tmp_path / "idle.json"
    assert check(QUIET, path, dry_run=True, ops=recorder.ops(), boot_id=BOOT, now=100.0) is (
        Action.STAY_AWAKE)
    assert "idle for 0s, sleeping in 10m" in caplog.text
    assert "it would stay awake all the same: no magic packet could wake the box" in caplog.text
    assert recorder.calls == []  # asked, never armed: a dry run changes nothing


def test_a_dry_run_sees_what_the_idle_unit_cannot_read(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """--dry-run as root read a key the unit cannot (under /home) and promised a sleep."""
    import dataclasses

    caplog.set_level("INFO")
    path = tmp_path / "idle.json"
    blind = ["[server.llama] --api-key-file /home/ann/llama.key: the idle check cannot read it"]
    ops = dataclasses.replace(Recorder().ops(), idle_blind_spots=lambda _config: blind)
    for now in (100.0, 700.0):  # idle long enough by the second look
        action = check(QUIET, path, dry_run=True, ops=ops, boot_id=BOOT, now=now)
    assert action is Action.STAY_AWAKE
    assert "would stay awake (dry run): under its unit the check cannot read" in caplog.text
