import socket
import sys
from pathlib import Path

from sleepyllama.proxy.wol import MagicPacket, WakeCommand, WakeSchedule

from conftest import wait_for


def test_schedule_sends_at_once_then_once_per_interval() -> None:
    schedule = WakeSchedule(interval=3.0)
    sent = []
    for tenth in range(0, 100):  # ten seconds, checked every 0.1 s by many waiters
        now = tenth / 10
        for _waiter in range(5):
            if schedule.due(now):
                schedule.mark_sent(now)
                sent.append(now)
    assert sent == [0.0, 3.0, 6.0, 9.0]


def test_schedule_limits_across_wakes() -> None:
    schedule = WakeSchedule(interval=3.0)
    schedule.mark_sent(10.0)
    assert not schedule.due(11.0)
    assert schedule.seconds_until_due(11.0) == 2.0
    assert schedule.due(13.0)


def test_magic_packet_reaches_a_udp_listener() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        MagicPacket("ab:cd:ef:01:23:45", broadcast="127.0.0.1", port=port).send()
        data, _ = listener.recvfrom(200)
    assert data == b"\xff" * 6 + bytes.fromhex("abcdef012345") * 16


def test_magic_packet_failure_is_logged_not_raised(caplog) -> None:
    MagicPacket("ab:cd:ef:01:23:45", broadcast="127.0.0.1", port=9, source="192.0.2.77").send()
    assert "cannot send magic packet" in caplog.text


def test_wake_command_is_not_started_twice_while_running(tmp_path: Path) -> None:
    marker, release = tmp_path / "runs", tmp_path / "release"
    # each run marks that it ran, then runs on until the test lets it end
    script = (f"import os, time; open({str(marker)!r}, 'a').write('x')\n"
              f"while not os.path.exists({str(release)!r}): time.sleep(0.01)")
    command = WakeCommand((sys.executable, "-c", script), timeout=30)
    assert command.send()
    wait_for(lambda: marker.exists() and marker.read_text() == "x", what="the first run")
    assert not command.send()  # still running: skipped, and not counted as sent
    release.touch()
    wait_for(command.send, what="a run once the first has finished")
    wait_for(lambda: marker.read_text() == "xx", what="the second run")
    command.close()


def test_wake_command_failure_is_reported(caplog, tmp_path: Path) -> None:
    WakeCommand((str(tmp_path / "no-such-program"),)).send()
    assert "cannot run wake_command" in caplog.text
    command = WakeCommand((sys.executable, "-c", "raise SystemExit(3)"))
    command.send()
    # the next send finds it ended, and says how
    wait_for(lambda: command.send() and "exited with status 3" in caplog.text,
             what="the exit status in the journal")
    command.close()


def test_a_hung_wake_command_is_killed_with_its_children_and_waking_goes_on(
        caplog, tmp_path: Path) -> None:
    """One wake_command that hung disabled waking for the proxy's life, while the journal still
    counted signals sent."""
    import os

    pids = tmp_path / "pids"
    # a shell whose child sleeps: both must go
    script = f"echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; wait"
    now = [0.0]  # the command's clock, which the test moves
    command = WakeCommand(("/bin/sh", "-c", script), timeout=0.5, clock=lambda: now[0])
    assert command.send()
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, what="the command's pids")
    first = [int(pid) for pid in pids.read_text().split()]
    assert not command.send()  # still within its interval
    now[0] = 0.6
    assert command.send()  # hung: killed, and a new one started
    assert "still runs after" in caplog.text

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # an unreaped child

    wait_for(lambda: all(gone(pid) for pid in first), what="the hung command and its child gone")
    command.close()
    later = [int(pid) for pid in pids.read_text().split()][2:]
    wait_for(lambda: all(gone(pid) for pid in later), what="the last command gone on close")


def test_a_chatty_wake_command_never_floods_the_journal(caplog) -> None:
    now = [0.0]
    command = WakeCommand((sys.executable, "-c",
                           "import sys; sys.stdout.write('x' * 10_000_000); sys.exit(2)"),
                          timeout=0.5, clock=lambda: now[0])
    command.send()
    now[0] = 0.7
    command.send()  # blocked on its full pipe: killed as hung
    command.close()
    assert len(caplog.text) < 10_000
