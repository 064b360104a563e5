"""People logged in (host/signals/sessions.py): logind's records as it fills them, judged."""

from __future__ import annotations

import pytest

from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.sessions import FIRST_WINDOW, SLACK, SessionsSignal, in_use, window
from sleepyllama.systemd import Session

NOW = 1_800_000_000.0
SSH = Session("4", "ann", "tty", "user", "active", tty="pts/0", remote_host="192.168.1.20",
              service="sshd", idle_since=NOW - 120)


def test_input_since_the_last_check_keeps_the_box_up_and_says_who_and_where() -> None:
    assert in_use(SSH, NOW, NOW - 150) == ("ann is logged in over SSH from 192.168.1.20 "
                                           "(pts/0, input 2m ago)")
    assert in_use(SSH, NOW, NOW - 60) is None  # no keystroke since the last check


@pytest.mark.parametrize(("session", "busy"), [
    # a desktop in use says so itself; one that went idle since the last check was in use
    (Session("2", "ann", "wayland", "user", "active", idle_hint=False, idle_since=NOW - 900),
     True),
    # a cron job's session (pam_systemd, systemd before 256 made it a user's): no person
    (Session("7", "root", "unspecified", "user", "active", service="cron"), False),
    (Session("2", "ann", "x11", "user", "active", idle_hint=True, idle_since=NOW - 5), True),
    (Session("2", "ann", "x11", "user", "active", idle_hint=True, idle_since=NOW - 600), False),
    # no terminal and no hint: a command over SSH (rsync, scp) at work while it lasts
    (Session("5", "bob", "unspecified", "user", "active", service="sshd"), True),
    # logged out while its processes linger (tmux), a greeter, a login screen: nobody there
    (Session("6", "ann", "tty", "user", "closing", tty="pts/1", idle_since=NOW), False),
    (Session("c1", "gdm", "wayland", "greeter", "active"), False),
])
def test_what_counts_as_someone_there(session: Session, busy: bool) -> None:
    assert (in_use(session, NOW, NOW - 60) is not None) is busy


def test_the_window_is_the_time_since_the_last_check_with_slack_for_the_ttys_coarse_atime() -> None:
    assert window(NOW, NOW - 30) == 30 + SLACK
    assert window(NOW, None) == FIRST_WINDOW
    assert window(NOW, NOW + 99) == FIRST_WINDOW  # a clock that went back
    assert window(NOW, NOW - 7200) == 180 + SLACK  # unwatched time is no person's input


def test_the_signal_reads_busy_idle_or_unknown() -> None:
    busy = SessionsSignal(lambda: [SSH], NOW - 150, clock=lambda: NOW).read()
    assert busy.activity is Activity.BUSY and "ann is logged in over SSH" in busy.reason
    idle = SessionsSignal(lambda: [SSH], NOW - 30, clock=lambda: NOW).read()
    assert idle.activity is Activity.IDLE and idle.reason == "no input from 1 user logged in"

    def no_logind() -> list[Session]:
        raise OSError("Failed to connect to bus")

    unknown = SessionsSignal(no_logind, None, clock=lambda: NOW).read()
    assert unknown.activity is Activity.UNKNOWN and "logind" in unknown.reason


def test_a_desktop_that_never_says_it_is_idle_is_named_with_what_changes_that() -> None:
    """Found by trying it: a bare window manager never sets logind's IdleHint, and the box
    read busy for ever without saying which session or what to do."""
    bare = Session("3", "ann", "x11", "user", "active", tty="tty7", idle_hint=False)
    said = in_use(bare, NOW, NOW - 60)
    assert said == ("ann is logged in at a x11 desktop (session 3), whose desktop never says "
                    "when it is idle: it keeps the box up while it is open (a screen locker such "
                    "as xss-lock tells logind; [idle] sessions = false counts no session)")
