"""People logged in: logind's sessions, with the time of each one's last input.

logind knows it without our reading any terminal: for a session with a terminal (a text
console, SSH with a pty) its IdleSinceHint is the terminal's atime, which the kernel moves on
input (within 8 s); a graphical session reports its own idle hint (the desktop sets it). A
session without either (`ssh box rsync ...`, an scp) is a command at work while it lasts.

Input since the last check keeps the box up, as a request does: the box sleeps [idle].timeout
after the last keystroke, never under someone typing or reading a busy desktop. Only a
person's session counts: cron's (a session of its own on systemd before 256) does not. A
desktop that never tells logind it is idle keeps the box up while it is open, and the reason
says so, with the setting that changes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sleepyllama.host.signals.base import Activity, Reading
from sleepyllama.systemd import Session
from sleepyllama.words import count, format_duration

GRAPHICAL = ("x11", "wayland", "mir")
# sessions PAM opens for a job, not a person: cron's and at's on systemd before 256 (which then
# gave them the class "background"), and a user's own service manager
NOT_PEOPLE = ("cron", "crond", "anacron", "atd", "systemd-user")
SETTING = "[idle] sessions = false counts no session"
# a tty's atime moves in steps of 8 s, and the timer fires within its accuracy: a keystroke just
# before the last check must still count at this one
SLACK = 15.0
FIRST_WINDOW = 60.0  # no previous check to count from (the first after a boot or a resume)
LONGEST_WINDOW = 180.0  # checks further apart than this were not watched anyway (host/idle.py)


def where(session: Session) -> str:
    if session.type in GRAPHICAL:
        return f"at a {session.type} desktop"
    if session.service == "sshd" or session.remote_host:
        return "over SSH" + (f" from {session.remote_host}" if session.remote_host else "")
    return "on a console" if session.tty.startswith("tty") else f"in a {session.service or 'login'} session"


def in_use(session: Session, now: float, since: float) -> str | None:
    """Why this session keeps the box up, or None: no input since `since` (CLOCK_REALTIME)."""
    if not a_person(session):
        return None
    terminal = f"{session.tty}, " if session.tty else ""
    if never_says_idle(session):
        return never_idle(session)
    if session.type in GRAPHICAL and not session.idle_hint:
        return f"{session.user} is logged in {where(session)} ({terminal}in use)"
    if session.idle_since <= 0:
        if session.type in GRAPHICAL:
            return None  # idle, says the desktop, since logind does not know when
        return f"{session.user} has a session {where(session)} without a terminal (a command or a copy)"
    if session.idle_since >= since:
        ago = format_duration(max(0, round(now - session.idle_since)))
        return f"{session.user} is logged in {where(session)} ({terminal}input {ago} ago)"
    return None


def a_person(session: Session) -> bool:
    """A person's open session: not one logged out whose processes linger (tmux), a greeter,
    a lock screen, nor a job's (cron's, before systemd 256: the job is its own signal)."""
    return (session.state in ("active", "online") and session.klass.startswith("user")
            and session.service not in NOT_PEOPLE)


def never_says_idle(session: Session) -> bool:
    """A desktop that never told logind whether it is idle: the hint never set, no moment."""
    return session.type in GRAPHICAL and not session.idle_hint and session.idle_since <= 0


def never_idle(session: Session) -> str:
    """A desktop that never told logind whether it is idle (a bare window manager): busy for as
    long as it is open; said with what changes that."""
    return (f"{session.user} is logged in {where(session)} (session {session.id}), whose desktop "
            "never says when it is idle: it keeps the box up while it is open (a screen locker "
            f"such as xss-lock tells logind; {SETTING})")


def window(now: float, last_check: float | None) -> float:
    """How far back input counts: since the last check, with slack for the tty's coarse atime."""
    if last_check is None or last_check > now:
        return FIRST_WINDOW
    return min(now - last_check, LONGEST_WINDOW) + SLACK


class SessionsSignal:
    name = "sessions"

    def __init__(self, list_sessions: Callable[[], Sequence[Session]], last_check: float | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.list_sessions, self.last_check, self.clock = list_sessions, last_check, clock

    def read(self) -> Reading:
        try:
            sessions = self.list_sessions()
        except Exception as error:  # D-Bus: logind not running, a session gone while read
            return Reading(self.name, Activity.UNKNOWN, f"cannot list logind sessions: {error}")
        now = self.clock()
        since = now - window(now, self.last_check)
        busy = [why for session in sessions if (why := in_use(session, now, since))]
        if busy:
            return Reading(self.name, Activity.BUSY, "; ".join(busy))
        people = {s.user for s in sessions if s.klass.startswith("user") and s.state != "closing"}
        return Reading(self.name, Activity.IDLE, f"no input from {count(len(people), 'users')} "
                       "logged in" if people else "nobody logged in")
