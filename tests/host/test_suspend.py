"""The sleep sequence (host/suspend.py) with the system operations recorded: the last look before
the servers stop, the proxies told, logind asked first, Wake-on-LAN armed, a failure undone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sleepyllama.host import idle_check, state
from sleepyllama.host.idle import Action, decide
from sleepyllama.host.idle_check import check
from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.host.suspend import sleep_now

from host.stand_ins import BOOT, QUIET, Recorder, a_proxy_told, checks_every_30s, stored


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


@pytest.mark.parametrize("action", ["hibernate", "suspend-then-hibernate", "poweroff"])
def test_each_action_is_asked_of_logind_and_told_to_the_proxies(action: str) -> None:
    from sleepyllama.hints import Hint, decode

    with a_proxy_told(f'action = "{action}"\n') as (proxy, told):
        recorder = Recorder()
        assert sleep_now(told, [], "idle for 10m", recorder.ops())
        assert recorder.calls == ["arm", "stop", action]
        assert decode(proxy.recv(1024)) == Hint("sleeping", action=action)


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
