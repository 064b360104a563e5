"""The ledger (crash-safe, bounded) and sleepyllama history drawn from a ledger the code wrote."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sleepyllama import history, ledger
from sleepyllama.config import EnergyConfig

DAY = time.mktime((2026, 11, 23, 0, 0, 0, 0, 0, -1))  # a Monday, local midnight


class Clock:
    """ledger.append's view of time and boot, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now, self.boot = DAY, "boot-1"
        monkeypatch.setattr(ledger.time, "time", lambda: self.now)
        monkeypatch.setattr(ledger.systemd, "boot_id", lambda: self.boot)

    def at(self, hours: float) -> Clock:
        self.now = DAY + hours * 3600
        return self


def test_a_day_of_sleeps_and_wakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock(monkeypatch)
    clock.at(0)
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=7.5))
    clock.at(1)
    ledger.append(path, ledger.Sleep(reason="idle for 1h (timeout 1h): GPU 0 P8"))
    ledger.append(path, ledger.Suspend(kind="suspend"))
    clock.at(8)
    ledger.append(path, ledger.Resume(kind="suspend"))
    clock.at(8.01)
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=8.3))
    clock.at(20)
    ledger.append(path, ledger.Suspend(kind="suspend"))  # a lid: no verdict asked for it
    clock.boot = "boot-2"  # it never resumed: switched off, started again next morning
    clock.at(30)
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=9.0))
    with path.open("a") as file:
        file.write('{"at": 1795600000, "event": "res')  # torn by a crash mid-write

    entries = ledger.read(path)
    assert len(entries) == 7
    found = history.sleeps(entries)
    assert [(s.start - DAY) / 3600 for s in found] == [1, 20]
    assert [(s.end - DAY) / 3600 for s in found] == [8, 30]  # the second ends when boot-2 began
    assert found[0].reason.startswith("idle for 1h") and "something else" in found[1].reason

    data = history.report(entries, EnergyConfig(base_watts=40.0, asleep_watts=2.0,
                                                price_per_kwh=0.5, currency="EUR"),
                          {"watts": 22.0, "samples": 10}, 2, DAY + 36 * 3600)
    monday, tuesday = data["days"]
    assert monday["date"].startswith("Mon") and monday["asleep_hours"] == pytest.approx(11.0)
    assert monday["cells"][:2] == ["awake", "awake"] and monday["cells"][2] == "asleep"
    assert monday["cells"][16] == "woken" and monday["wakes"] == 1
    assert tuesday["asleep_hours"] == pytest.approx(6.0) and tuesday["cells"][-1] == ""
    assert data["kwh_saved"] == pytest.approx(17.0 * 60.0 / 1000)  # (22 + 40 - 2) W for 17 h
    assert data["money_saved"] == pytest.approx(0.51)
    text = history.render(data, pictures=False)
    assert "Mon 11-23  ##" + "." * 14 + "^" in text and "asleep 11.0 h  1 wake(s)  0.66 kWh saved" in text
    assert "total: asleep 17.0 h of 48 h, 1 wake(s), 1.02 kWh saved (0.51 EUR)" in text
    assert "GPUs 22 W measured over 10 idle checks; base_watts 40 W" in text
    assert "resumed; llama ready after 8.3s" in text


def test_without_a_power_figure_history_says_how_to_get_one(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock(monkeypatch)
    clock.at(1)
    ledger.append(path, ledger.Suspend())
    clock.at(3)
    ledger.append(path, ledger.Resume())
    data = history.report(ledger.read(path), EnergyConfig(), None, 1, DAY + 4 * 3600)
    assert data["kwh_saved"] is None and "no power figure yet" in data["power"]
    data = history.report(ledger.read(path), EnergyConfig(), {"watts": 30.0, "samples": 3}, 1,
                          DAY + 4 * 3600)
    assert "GPUs only: set [energy] base_watts" in data["power"]
    assert data["kwh_saved"] == pytest.approx(2.0 * 28.0 / 1000)


def test_proxy_wakes_name_their_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "llama.ledger.jsonl", Clock(monkeypatch)
    clock.at(9)
    ledger.append(path, ledger.Wake(first="192.168.1.20:51234", request="POST /v1/chat/completions",
                                    signals=3, ready_after=12.4))
    clock.at(10)
    ledger.append(path, ledger.Wake(first="192.168.1.30:40000", request="", signals=60,
                                    gave_up_after=180.0))
    text = history.render(history.report(ledger.read(path), EnergyConfig(), None, 1,
                                         DAY + 11 * 3600), pictures=True)
    assert "192.168.1.20:51234 POST /v1/chat/completions: ready after 12.4s, 3 wake signals" in text
    assert "192.168.1.30:40000 (not HTTP): gave up after 180.0s, 60 wake signals" in text
    assert "↑" in text
    # a wake that gave up is listed, but it woke nothing: one wake in the day's count
    data = history.report(ledger.read(path), EnergyConfig(), None, 1, DAY + 11 * 3600)
    assert data["wakes"] == 1 and len(data["recent_wakes"]) == 2


def test_the_ledger_stays_bounded_and_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "MAX_BYTES", 4096)
    path = tmp_path / "ledger.jsonl"
    for number in range(200):
        ledger.append(path, ledger.AnsweredAsleep(request="GET /v1/models", client=str(number)))
    assert path.stat().st_size <= 4096
    numbers = [int(entry.client) for entry in ledger.read(path)]  # type: ignore[attr-defined]
    assert numbers[-1] == 199 and numbers[0] > 100  # the oldest rolled off
    assert numbers == list(range(numbers[0], 200))


def test_a_line_of_the_wrong_shape_is_skipped_not_a_crash(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock(monkeypatch)
    clock.at(1)
    ledger.append(path, ledger.Sleep(reason="idle"))
    with path.open("a") as file:
        for line in ('{"at": "yesterday", "event": "resume"}', '{"at": 1, "event": 5}',
                     '{"at": NaN, "event": "resume"}', '{"at": 1, "event": "x", "boot": 3}',
                     '[1, 2]'):
            file.write(line + "\n")
    clock.at(2)
    ledger.append(path, ledger.Suspend(kind="suspend"))
    entries = ledger.read(path)
    assert [entry.event for entry in entries] == ["sleep", "suspend"]
    history.report(entries, EnergyConfig(), None, 1, DAY + 86400)  # no crash


@pytest.mark.root  # another user
def test_a_user_who_may_not_read_the_proxys_records_gets_the_rest() -> None:
    """The proxy's StateDirectory is its DynamicUser's, private: status and history as a
    non-root user crashed with PermissionError on the always-on host."""
    import tempfile

    from conftest import require_another_user

    require_another_user()
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:  # pytest's tmp_path is root's only
        Path(directory).chmod(0o755)
        _read_as_nobody(Path(directory))


def _read_as_nobody(tmp_path: Path) -> None:
    from conftest import as_nobody

    host = tmp_path / "ledger.jsonl"
    host.write_text('{"at": 1795600000, "event": "resume", "boot": "b"}\n')
    host.chmod(0o644)
    private = tmp_path / "private"
    (private / "sleepyllama-proxy").mkdir(parents=True)
    (private / "sleepyllama-proxy" / "llama.ledger.jsonl").write_text(
        '{"at": 1795600001, "event": "wake", "boot": "b"}\n')
    private.chmod(0o700)
    code = ("import sys; from pathlib import Path; from sleepyllama import history; missed = []; "
            "entries = history.read_ledgers([Path(sys.argv[1])], Path(sys.argv[2]), missed); "
            "print(len(entries), missed)")
    result = as_nobody("-c", code, str(host), str(private / "sleepyllama-proxy"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"1 ['{private / 'sleepyllama-proxy'}']"


def test_what_a_wake_costs_is_the_median_of_the_last_ten() -> None:
    wakes = [ledger.Wake(at=n, ready_after=seconds)
             for n, seconds in enumerate([100, 100, 100, 12, 13, 14, 11, 12, 15, 16, 14, 13])]
    assert history.typical_wake(wakes) == (13.5, 10)  # the two oldest left out
    gave_up = [ledger.Wake(at=1, gave_up_after=180)]
    assert history.typical_wake(gave_up) is None
    assert history.typical_wake([]) is None


def test_what_the_first_answer_takes_after_ready_is_shown_with_the_wake(tmp_path: Path) -> None:
    path = tmp_path / "llama.ledger.jsonl"
    path.write_text("".join(f'{{"at": {n}, "event": "first-answer", "after_ready": {seconds}}}\n'
                            for n, seconds in enumerate(["0.5", "1.5", "2.5", "NaN", "-1", '"x"'])))
    entries = ledger.read(path)
    assert history.typical_first_answer(entries) == 1.5  # only finite, non-negative times
    assert history.typical_first_answer([]) is None
    assert history.wake_cost((14.2, 3), 1.5) == (
        "wakes take 14s (the median of the last 3 wakes), the first answer 1.5 s after that")
    assert history.wake_cost((14.2, 1), None) == "wakes take 14s (one wake so far)"


def test_the_always_on_host_points_to_the_gpu_box_for_the_energy_figure() -> None:
    assert history.power(EnergyConfig(), None, gpu_box=False) == (
        None, "the energy saved is measured on the GPU box: sleepyllama history there")
    assert "power.draw is averaged" in history.power(EnergyConfig(), None)[1]


def test_a_resume_shows_what_the_gpu_check_and_the_servers_said(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock(monkeypatch)
    clock.at(8)
    ledger.append(path, ledger.Resume(kind="suspend"))
    ledger.append(path, ledger.GpuHealed(error="cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)"))
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=8.3))
    clock.at(9)
    ledger.append(path, ledger.Resume(kind="suspend"))
    ledger.append(path, ledger.GpuFailed(error="cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)",
                                         held_by=["ollama (pid 311)"]))
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=2.1))
    ledger.append(path, ledger.ServerDegraded(
        name="llama", problem="on the CPU: CUDA failed to initialize (unknown error)"))
    said = [wake.what for wake in history.wakes(ledger.read(path))]
    assert said == [
        "resumed; CUDA healed by reloading nvidia_uvm; llama ready after 8.3s",
        "resumed; GPU unusable (cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)); llama on "
        "the CPU: CUDA failed to initialize (unknown error); llama ready after 2.1s"]


@pytest.mark.parametrize("line", [
    '{"at": 1795600000, "event": "wake", "ready_after": NaN, "signals": 2}',
    '{"at": 1795600000, "event": "wake", "ready_after": Infinity, "signals": 2}',
    '{"at": 1795600000, "event": "wake", "ready_after": "12", "signals": 2}',
    '{"at": 1795600000, "event": "wake", "ready_after": 12, "signals": "2"}',
    '{"at": 1e18, "event": "resume"}',
    '{"at": -5, "event": "resume"}',
    '{"at": 1795600000, "event": "server-ready", "load_seconds": 8.3}',
    '{"at": 1795600000, "event": "server-ready", "name": "llama", "load_seconds": NaN}',
    '{"at": 1795600000, "event": "wake", "first": ["x"], "ready_after": 3}',
    '{"at": 1795600000, "event": "gpu-failed", "held_by": "ollama"}',
    '{"at": 1795600000, "event": "box-sleeping", "saving_watts": NaN}',
    '{"at": 1795600000, "event": "box-sleeping", "saving_watts": 1e9}',
    '{"at": 1795600000, "event": "box-sleeping", "saving_watts": "183"}',
])
def test_every_field_read_back_is_checked(tmp_path: Path, line: str) -> None:
    """Found by an adversarial trial (issue 20): a NaN ready_after made every give-up raise in
    Retry-After, so held clients never got their 503; a server-ready without a name, a NaN
    duration or at: 1e18 crashed status and history. Such a line is skipped, with a warning."""
    from sleepyllama.proxy.wake_record import WakeRecord

    path = tmp_path / "ledger.jsonl"
    good = '{"at": 1795600100, "event": "resume", "boot": "b"}'
    path.write_text(f"{line}\n{good}\n")
    entries = ledger.read(path)
    assert [entry.at for entry in entries] == [1795600100]
    assert WakeRecord.remembering(entries).retry_after() == 30  # the default: no wake known
    text = history.render(history.report(entries, EnergyConfig(), None, 2, 1795700000.0),
                          pictures=False)
    assert "resumed" in text


def test_an_old_ledgers_query_string_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"at": 1795600000, "event": "wake", "first": "192.168.1.20:5123", '
                    '"request": "POST /v1/chat/completions?api_key=sk-secret", "signals": 2, '
                    '"ready_after": 9.5}\n')
    said = [wake.what for wake in history.wakes(ledger.read(path))]
    assert said == ["192.168.1.20:5123 POST /v1/chat/completions: ready after 9.5s, 2 wake signals"]


def test_a_hibernated_or_powered_off_box_saves_more_than_a_suspended_one() -> None:
    from sleepyllama.history import Sleep, kwh_saved

    energy = EnergyConfig(asleep_watts=5.0, off_watts=0.5)
    hour = 3600.0
    found = [Sleep(0.0, hour, "idle", "suspend"), Sleep(hour, 2 * hour, "idle", "poweroff"),
             Sleep(2 * hour, 3 * hour, "idle", "hibernate")]
    assert kwh_saved(found, 0.0, 3 * hour, 3 * hour, 50.0, energy) == pytest.approx(
        (45.0 + 49.5 + 49.5) / 1000)
    # the kind comes from the suspend entry's (systemd-sleep's word, or ours for a power-off)
    entries = [ledger.Suspend(at=10.0, boot="a", kind="hibernate"),
               ledger.Resume(at=20.0, boot="a", kind="hibernate")]
    assert history.sleeps(entries)[0].kind == "hibernate"


def test_wakes_a_user_may_not_read_are_said_to_need_root_not_counted_as_none() -> None:
    """history as a user on the always-on host showed 7 days of "0 wake(s)" after a wake,
    under a one-line "root only" note: the proxy's ledger is root's."""
    data = history.report([], EnergyConfig(), None, 2, DAY + 36 * 3600, gpu_box=False,
                          unreadable=["/var/lib/sleepyllama-proxy"])
    text = history.render(data, pictures=False)
    assert "0 wake(s)" not in text and "wakes: needs root (sudo sleepyllama history)" in text
    assert "wakes: needs root" in history.last_day_line(data, pictures=False)
    readable = history.report([], EnergyConfig(), None, 2, DAY + 36 * 3600, gpu_box=False)
    assert "0 wake(s)" in history.render(readable, pictures=False)


def test_a_wake_s_window_ends_at_the_next_sleep_or_resume(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by trying it: every event of the 30 minutes after a resume was listed under it: a
    GPU failure of 21:09 and twelve "ready" lines under the 20:53 resume."""
    path, clock = tmp_path / "ledger.jsonl", Clock(monkeypatch)
    clock.at(20.88)
    ledger.append(path, ledger.Resume(kind="suspend"))
    ledger.append(path, ledger.ServerReady(name="llama", load_seconds=8.3))
    clock.at(20.95)
    ledger.append(path, ledger.Sleep(reason="idle for 5m"))
    ledger.append(path, ledger.Suspend(kind="suspend"))
    clock.at(21.1)
    ledger.append(path, ledger.Resume(kind="suspend"))
    clock.at(21.15)
    ledger.append(path, ledger.GpuFailed(error="cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)"))
    for load in range(12):  # a server that restarted, and said ready each time
        ledger.append(path, ledger.ServerReady(name="llama", load_seconds=2.0 + load))
    said = [wake.what for wake in history.wakes(ledger.read(path))]
    assert said == [
        "resumed; llama ready after 8.3s",
        "resumed; GPU unusable (cuInit failed (CUDA_ERROR_UNKNOWN 999, unknown error)); llama "
        "ready after 2.0s"]


def test_a_learned_pre_wake_names_the_habit_it_was_for(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path, clock = tmp_path / "llama.ledger.jsonl", Clock(monkeypatch)
    clock.at(8)
    ledger.append(path, ledger.Wake(first="learned", request="learned pre-wake",
                                    cause="learned: weekdays about 08:25",
                                    expected=DAY + 8.5 * 3600, signals=2, ready_after=14.0))
    woken = history.wakes(ledger.read(path))
    assert woken[0].what == ("learned pre-wake for weekdays about 08:25: ready after 14.0s, "
                             "2 wake signals")
