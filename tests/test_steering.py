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

    def __init__(self, state_file: Path, busy: str = "", idle_exit: float = 1.0) -> None:
        self.done: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
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
    socket, in order), so what they did is in box.done; then the box stops. Its moment is
    later than any the box took (within one millisecond of the box's own "now", this clock
    may not have moved on yet)."""
    command = steer.Command("stay-awake", 60, max(int(time.time() * 1000),
                                                  box.receiver.last_ms + 1), "later")
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
                                                      box.receiver.last_ms + 1, "page"))
        sock.settimeout(2)
        for _ in range(3):  # a retry whose answer was lost: answered again, cancelled once
            sock.sendto(datagram, ("127.0.0.1", box.port))
            assert b" ok " in sock.recv(600)
    box.stop()
    assert box.done == ["stay 10800", "cancel"]
    # a restart of the box's side: the same datagram, replayed now, does nothing
    again = Box(state_file)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, ("127.0.0.1", again.port))
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
    old = steer.encode(SECRET, steer.Command("sleep-now", 0, box.receiver.last_ms - 5000, "x"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(old, ("127.0.0.1", box.port))
    answered_after(box)
    assert box.done == ["stay 60"]
