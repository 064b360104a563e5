"""The GPU box's side of the way back, on a real UDP socket, its actions stood in for: what a
command does, once, and what a replay, a restart or a busy box make of it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from sleepyllama import steer
from sleepyllama.host.steering import Actions, Receiver

SECRET = b"a-shared-secret-of-32-characters"


class Box:
    """A receiver on loopback in a thread, recording what it was asked to do."""

    def __init__(self, state_file: Path, busy: str = "", idle_exit: float = 1.0,
                 bind: str = "127.0.0.1") -> None:
        self.done: list[str] = []
        self.sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((bind, 0))
        self.port = self.sock.getsockname()[1]
        actions = Actions(stay=lambda seconds: (self.done.append(f"stay {seconds:g}") or True,
                                                f"staying awake for {seconds:g} s"),
                          cancel=lambda: self.done.append("cancel") or "cancelled",
                          busy=lambda: busy,
                          sleep=lambda who: self.done.append(f"sleep for {who}"))
        self.receiver = Receiver(self.sock, SECRET, state_file, actions)
        self.thread = threading.Thread(target=self.receiver.serve, args=(idle_exit,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.receiver.stop()
        self.thread.join(5)
        self.sock.close()


def answered_after(box: Box) -> None:
    """A good command after those before it, answered: the box has read them all (one
    socket, in order), so what they did is in box.done; then the box stops."""
    command = steer.Command("stay-awake", 60, int(time.time() * 1000), "later", "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(steer.encode(SECRET, command), ("127.0.0.1", box.port))
        assert steer.read_answer(SECRET, sock.recv(600), command) == (
            True, "staying awake for 60 s")
    box.stop()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "steer.json"


def test_stay_awake_is_done_once_however_often_the_datagram_comes(state_file) -> None:
    box = Box(state_file)
    assert steer.send(SECRET, "127.0.0.1", box.port, "stay-awake", 10800, who="page") == (
        True, "staying awake for 10800 s")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        datagram = steer.encode(SECRET, steer.Command("stay-awake-cancel", 0,
                                                      int(time.time() * 1000), "page",
                                                      "127.0.0.1"))
        sock.settimeout(2)
        for _ in range(3):  # a retry whose answer was lost: answered again, cancelled once
            sock.sendto(datagram, ("127.0.0.1", box.port))
            assert b" ok " in sock.recv(600)
    box.stop()
    assert box.done == ["stay 10800", "cancel"]
    # a restart of the box's side: the same datagram, replayed now, does nothing
    again = Box(state_file)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(datagram, ("127.0.0.1", again.port))
        assert b"taken already" in sock.recv(600)
    answered_after(again)
    assert again.done == ["stay 60"]


def test_sleep_now_respects_the_box_s_busy_verdict(state_file) -> None:
    busy = Box(state_file, busy="llama: 2 requests in flight")
    assert steer.send(SECRET, "127.0.0.1", busy.port, "sleep-now", who="page") == (
        False, "staying awake: busy: llama: 2 requests in flight")
    busy.stop()
    assert busy.done == []
    idle = Box(state_file)
    taken, said = steer.send(SECRET, "127.0.0.1", idle.port, "sleep-now", who="page")
    idle.stop()
    assert taken and said.startswith("going to sleep")
    assert idle.done == ["sleep for page"]  # after the answer went out


def test_a_command_under_another_secret_gets_no_answer_and_does_nothing(state_file) -> None:
    box = Box(state_file)
    with pytest.raises(OSError, match="did not answer"):
        steer.send(b"another-secret-of-32-characters!", "127.0.0.1", box.port, "sleep-now",
                   tries=1, timeout=0.3)
    answered_after(box)
    assert box.done == ["stay 60"]


def test_a_broken_state_file_refuses_what_came_before_it(state_file) -> None:
    state_file.write_text('{"last_ms": NaN}')
    box = Box(state_file)
    old = steer.encode(SECRET, steer.Command("sleep-now", 0, box.receiver.floor_ms - 5000, "x",
                                             "127.0.0.1"))
    # found by a CI run: a command of the very millisecond the box started in was refused
    now = steer.Command("stay-awake", 30, box.receiver.floor_ms, "now", "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(old, ("127.0.0.1", box.port))
        assert b"sent before this box lost its record" in sock.recv(600)
        sock.sendto(steer.encode(SECRET, now), ("127.0.0.1", box.port))
        assert steer.read_answer(SECRET, sock.recv(600), now) == (True, "staying awake for 30 s")
    answered_after(box)
    assert box.done == ["stay 30", "stay 60"]


def test_a_sender_whose_clock_is_ahead_locks_out_no_other(state_file) -> None:
    """Found by trying it: with "later than the last taken", a sender 59 s ahead made every
    command of a right clock a replay for up to a minute."""
    box = Box(state_file, idle_exit=60)
    ahead = steer.Command("stay-awake", 600, int(time.time() * 1000) + 59_000, "ahead",
                          "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(steer.encode(SECRET, ahead), ("127.0.0.1", box.port))
        assert steer.read_answer(SECRET, sock.recv(600), ahead) == (True, "staying awake for 600 s")
    assert steer.send(SECRET, "127.0.0.1", box.port, "stay-awake", 60, who="right") == (
        True, "staying awake for 60 s")
    box.stop()
    assert box.done == ["stay 600", "stay 60"]


def test_a_refused_command_is_answered_with_why_at_once(state_file) -> None:
    box = Box(state_file, idle_exit=60)
    late = steer.Command("sleep-now", 0, int(time.time() * 1000) - 90_000, "slow", "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(steer.encode(SECRET, late), ("127.0.0.1", box.port))
        taken, said = steer.read_answer(SECRET, sock.recv(600), late) or (None, "")
    assert taken is False and said.startswith("sent 90 s behind this box's clock"), said
    answered_after(box)
    assert box.done == ["stay 60"]


def test_a_command_for_another_box_is_refused_on_the_address_it_came_to(state_file) -> None:
    """A socket on every address, as systemd's ListenDatagram= opens it: the kernel says
    which address each datagram was sent to (127.0.0.1 and 127.0.0.2 are two here)."""
    box = Box(state_file, idle_exit=60, bind="0.0.0.0")
    assert steer.send(SECRET, "127.0.0.2", box.port, "stay-awake", 60, who="page") == (
        True, "staying awake for 60 s")
    for_another = steer.Command("sleep-now", 0, int(time.time() * 1000), "page", "127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(steer.encode(SECRET, for_another), ("127.0.0.2", box.port))
        assert steer.read_answer(SECRET, sock.recv(600), for_another) == (
            False, "for another box: sent to 127.0.0.1, received on 127.0.0.2")
    box.stop()
    assert box.done == ["stay 60"]


def test_a_flood_of_bad_datagrams_is_counted_not_logged_each(state_file, caplog) -> None:
    """Found by trying it: 116,161 warning lines in 6 s from one sender."""
    box = Box(state_file, idle_exit=60)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for number in range(200):  # within what the socket buffers: none is dropped
            sock.sendto(f"noise {number}".encode(), ("127.0.0.1", box.port))
    answered_after(box)  # after the noise, in order: it has all been read
    warnings = [record.getMessage() for record in caplog.records
                if record.name == "sleepyllama-steer" and record.levelname == "WARNING"]
    assert len(warnings) <= 3, warnings
    counted = sum(int(line.split()[1]) for line in warnings)
    assert counted == 200, warnings  # the first at once, the rest in the line said at stop
    assert "not a command: " in warnings[-1]
