"""The idle checker's orchestration: verdict, state file, and the sleep sequence with the system
operations replaced (no systemd here; the container tests run the real ones)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleepyllama import config, ledger
from sleepyllama.host import idle_check, state
from sleepyllama.host.idle import Action, decide
from sleepyllama.host.idle_check import check
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.host.suspend import SystemOps, sleep_now

# no signal at all: the verdict is the clock's alone
QUIET_TEXT = '[idle]\ntimeout = "10m"\ngpu = "off"\nservers = false\ninhibitors = false\nsessions = false\n'
QUIET = config.parse(QUIET_TEXT)
BOOT = "boot-1"


class Recorder:
    def __init__(self, left: list[str] | None = None, suspend_error: Exception | None = None,
                 cannot_wake: list[str] | None = None, can: str = "yes") -> None:
        self.calls: list[str] = []
        self.can = can  # logind's answer to Can<Action>
        self.left, self.suspend_error = left or [], suspend_error
        self.cannot_wake = cannot_wake or []
        self.idle_watts: dict | None = None  # the GPUs' idle draw, as the idle checks measured it

    def ops(self) -> SystemOps:
        def stop(timeout: float) -> list[str]:
            self.calls.append("stop")
            return self.left

        def sleep(action: str) -> None:
            self.calls.append(action)  # "suspend", unless [idle] action says otherwise
            if self.suspend_error:
                raise self.suspend_error

        def arm(_proxies: object) -> list[str]:
            self.calls.append("arm")
            return self.cannot_wake

        return SystemOps(stop_servers=stop, start_servers=lambda: self.calls.append("start"),
                         sleep=sleep, arm_wake_on_lan=arm,
                         wake_on_lan_problems=lambda _proxies: self.cannot_wake,
                         idle_watts=lambda: self.idle_watts, can_sleep=lambda _action: self.can,
                         idle_blind_spots=lambda _config: [])


@contextlib.contextmanager
def a_proxy_told(settings: str) -> Iterator[tuple[socket.socket, config.Config]]:
    """A proxy's hint socket on loopback, and a box's config ([idle] and more) that tells it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.settimeout(10)
        yield proxy, config.parse(f'[idle]\ngpu = "off"\nservers = false\ninhibitors = false\n'
                                  f'{settings}[notify]\nproxies = '
                                  f'["127.0.0.1:{proxy.getsockname()[1]}"]\n')


def stored(path: Path) -> dict:
    return json.loads(path.read_text())


def checks_every_30s(config_: config.Config, path: Path, start: float, end: float,
                     ops: SystemOps) -> Action:
    """The timer's checks from start to end: only time between looks counts as idle."""
    now, action = start, Action.STAY_AWAKE
    while now <= end and action is Action.STAY_AWAKE:
        action = check(config_, path, dry_run=False, ops=ops, boot_id=BOOT, now=now)
        now += 30.0
    return action


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
    asked = [entry for entry in ledger.read(tmp_path / "ledger.jsonl") if entry["event"] == "sleep"]
    assert len(asked) == 1 and asked[0]["reason"].startswith("idle for 10m")


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


def test_a_failed_suspend_starts_the_servers_again(tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    state.write(path, {"boot_id": BOOT, "idle_since": 0.0, "looked_at": 890.0})
    recorder = Recorder(suspend_error=OSError("CanSuspend: na"))
    check(QUIET, path, dry_run=False, ops=recorder.ops(), boot_id=BOOT, now=900.0)
    assert recorder.calls == ["arm", "stop", "suspend", "start"]
    assert stored(path)["idle_since"] is None  # a full timeout before the next attempt


def test_servers_that_do_not_stop_keep_the_box_up() -> None:
    recorder = Recorder(left=["sleepyllama-server@llama.service"])
    assert not sleep_now(QUIET, [], "test", recorder.ops())
    assert recorder.calls == ["arm", "stop", "start"]


class IdleThenBusy:
    """Reads idle for the verdict, then busy: a request arrived between the verdict and the last
    look before the servers are stopped."""

    name = "servers"

    def __init__(self) -> None:
        self.activities = [Activity.IDLE, Activity.BUSY]

    def read(self) -> Reading:
        return Reading("servers", self.activities.pop(0), "llama: 1 request in flight")


def test_the_last_look_comes_before_the_servers_are_stopped(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "idle.json"
    state.write(path, {"boot_id": BOOT, "idle_since": 0.0, "looked_at": 890.0})
    recorder = Recorder()
    signal = IdleThenBusy()
    monkeypatch.setattr(idle_check, "signals_for", lambda _config, _record: [signal])
    assert check(QUIET, path, dry_run=False, ops=recorder.ops(), boot_id=BOOT, now=900.0) is (
        Action.SLEEP)
    assert recorder.calls == []  # nothing stopped: the request in flight is served
    assert stored(path)["idle_since"] is None


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


def test_the_sleep_sequence_tells_the_proxies_right_before_the_suspend() -> None:
    from sleepyllama.hints import Hint, decode

    with a_proxy_told("") as (proxy, told):
        recorder = Recorder()
        assert sleep_now(told, [], "idle for 10m", recorder.ops())
        assert recorder.calls == ["arm", "stop", "suspend"]
        assert decode(proxy.recv(1024)) == Hint("sleeping", action="suspend")
        # a sequence that stays awake tells nobody
        assert not sleep_now(told, [], "idle", Recorder(left=["x.service"]).ops())
        proxy.settimeout(0.5)
        with pytest.raises(TimeoutError):
            proxy.recv(1024)


@pytest.mark.parametrize(("action", "saving"), [("suspend", 183), ("poweroff", 184)])
def test_the_sleeping_hint_says_what_the_sleep_saves(action: str, saving: int) -> None:
    """The box awake and idle (GPUs measured, plus [energy] base_watts) less what it draws
    asleep: what the always-on host's page counts as kWh saved."""
    from sleepyllama.hints import Hint, decode

    with a_proxy_told(f'action = "{action}"\n[energy]\nbase_watts = 50\n') as (proxy, told):
        recorder = Recorder()
        recorder.idle_watts = {"watts": 135.0, "samples": 4}
        assert sleep_now(told, [], "idle for 10m", recorder.ops())
        assert decode(proxy.recv(1024)) == Hint("sleeping", action=action, saving_watts=saving)
    # nothing measured and no base_watts: the box does not know, and says nothing of it
    with a_proxy_told("") as (proxy, bare):
        recorder.idle_watts = None
        assert sleep_now(bare, [], "idle for 10m", recorder.ops())
        assert decode(proxy.recv(1024)) == Hint("sleeping", action="suspend")


def test_a_box_no_magic_packet_can_wake_stays_up_serving_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "idle.json"
    recorder = Recorder(cannot_wake=["eth0 cannot wake the box on a magic packet (Supports Wake-on: d)"])
    assert checks_every_30s(QUIET, path, 100.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["arm"]  # asked before anything stopped: the servers keep serving
    state = stored(path)
    assert state["idle_since"] is None  # the clock starts again: the next try is a timeout away
    assert "Supports Wake-on: d" in state["reason"] and "woken_by" in state["reason"]


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


@pytest.mark.parametrize("action", ["hibernate", "suspend-then-hibernate", "poweroff"])
def test_each_action_is_asked_of_logind_and_told_to_the_proxies(action: str) -> None:
    from sleepyllama.hints import Hint, decode

    with a_proxy_told(f'action = "{action}"\n') as (proxy, told):
        recorder = Recorder()
        assert sleep_now(told, [], "idle for 10m", recorder.ops())
        assert recorder.calls == ["arm", "stop", action]
        assert decode(proxy.recv(1024)) == Hint("sleeping", action=action)


def test_a_power_off_is_recorded_and_its_wake_is_the_next_boot(tmp_path: Path, monkeypatch) -> None:
    from sleepyllama import history, ledger
    from sleepyllama.host import hook

    path = tmp_path / "idle.json"
    poweroff = config.parse(QUIET_TEXT + 'action = "poweroff"\n')
    recorder = Recorder()
    assert checks_every_30s(poweroff, path, 100.0, 700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == ["arm", "stop", "poweroff"]
    entries = ledger.read(tmp_path / "ledger.jsonl")
    assert [(e["event"], e.get("action", e.get("kind"))) for e in entries] == [
        ("sleep", "poweroff"), ("suspend", "poweroff")]  # no systemd-sleep hook records it
    # the next boot: its first idle check records the boot as the wake, at the kernel's btime
    booted = float(ledger.read(tmp_path / "ledger.jsonl")[-1]["at"]) + 60
    monkeypatch.setattr(hook, "boot_time", lambda: booted)
    check(poweroff, path, dry_run=False, ops=recorder.ops(), boot_id="boot-2", now=10.0)
    entries = ledger.read(tmp_path / "ledger.jsonl")
    assert entries[-1]["event"] == "resume" and entries[-1]["kind"] == "poweroff"
    assert entries[-1]["at"] == booted
    assert [sleep.end for sleep in history.sleeps(entries)] == [booted]
    # once only, and never for a boot that follows a suspend
    check(poweroff, path, dry_run=False, ops=recorder.ops(), boot_id="boot-3", now=10.0)
    assert len(ledger.read(tmp_path / "ledger.jsonl")) == 3
    assert "booted" in history.wakes(ledger.read(tmp_path / "ledger.jsonl"))[-1].what


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


def test_a_sleep_logind_cannot_do_stops_nothing_and_says_why(tmp_path) -> None:
    """Found by trying it: [idle] action = "hibernate" on a box without swap stopped the
    server, told the proxy "sleeping" and lost the model at every timeout, and logind
    refused. logind is asked first now; nothing stops, nobody is told."""
    with a_proxy_told('action = "hibernate"\nsessions = false\n') as (proxy, told):
        recorder = Recorder(can="na")
        outcome = sleep_now(told, [], "idle for 1h", recorder.ops())
        assert not outcome and recorder.calls == []  # not even Wake-on-LAN armed
        assert "this box cannot hibernate: logind answers CanHibernate \"na\"" in outcome.why_not
        proxy.settimeout(0.5)
        with pytest.raises(TimeoutError):
            proxy.recv(600)  # no "sleeping" hint
    path = tmp_path / "idle.json"
    # past the timeout the verdict says sleep; the sequence stays up, and says why
    assert checks_every_30s(told, path, 0.0, 3700.0, recorder.ops()) is Action.SLEEP
    assert recorder.calls == []
    assert "cannot hibernate" in stored(path)["reason"], stored(path)
    # and a dry run, idle long enough, never promises that sleep
    would_sleep = dataclasses.replace(decide([], None, 0.0, BOOT, 0.0), action=Action.SLEEP)
    assert idle_check.say_what_would_happen(told, would_sleep, recorder.ops()) is (
        Action.STAY_AWAKE)
    assert idle_check.say_what_would_happen(told, would_sleep, Recorder().ops()) is Action.SLEEP


def test_logind_s_refusal_is_said_in_words() -> None:
    """The journal showed pystemd's raw b'...' and its 'i bet you did not see that coming'."""
    from sleepyllama import systemd

    class DBusBaseError(Exception):  # pystemd's shape: errno, name and message as bytes
        def __init__(self) -> None:
            self.err_name = b"org.freedesktop.login1.SleepVerbNotSupported"
            self.err_message = b"Sleep verb \"hibernate\" not supported"
            super().__init__("[err -95]: b'...'\nThis is DBusBaseError, ... (i bet you did not "
                             "see that coming)")

    said = systemd.dbus_words(DBusBaseError())
    assert said == ('Sleep verb "hibernate" not supported '
                    "(org.freedesktop.login1.SleepVerbNotSupported)")
    assert systemd.dbus_words(OSError("plain")) == "plain"
