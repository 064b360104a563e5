"""The page: every box on one screen, readable on a phone, working without JavaScript (a form
per button, a refresh every few seconds while a box wakes). Pure: boxes in, HTML out; every
value from a file or a config is escaped."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from sleepyllama import sleep_actions
from sleepyllama.dashboard.boxes import Box
from sleepyllama.dashboard.own_box import OwnBox
from sleepyllama.history import Day
from sleepyllama.words import format_duration

WAKING_REFRESH = 2  # seconds between reloads while a box wakes: the wake is followed
RESTING_REFRESH = 30

WORDS = {"asleep": "asleep", "waking": "waking", "awake": "awake",
         "did-not-wake": "did not wake", "unknown": "not heard from yet"}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f6f6f4;color:#222}
h1{font-size:1.3rem;margin:0 0 1rem}
.box{background:#fff;border-radius:.6rem;padding:1rem;margin:0 0 1rem;max-width:40rem;
box-shadow:0 1px 3px #0002}
.box h2{font-size:1.1rem;margin:0 0 .4rem}
.state{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600}
.asleep{background:#dde3f0}.waking{background:#ffe8a8}.awake{background:#c8efc8}
.did-not-wake{background:#f6c6c0}.unknown{background:#e4e4e4}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:.6rem 0}
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}
button{font-size:1rem;padding:.5rem 1.2rem;border-radius:.4rem;border:1px solid #888;
background:#fff}
.note{color:#666;font-size:.9rem}
.said,.problem{max-width:40rem;padding:.6rem 1rem;border-radius:.6rem;margin:0 0 1rem}
.said{background:#e2f3e2}.problem{background:#fbe3df}
.row{display:inline-block;margin:.4rem .6rem 0 0}
select{font-size:1rem;padding:.4rem}
.week{width:100%;max-width:30rem;display:block;margin:.4rem 0 0}
"""


def ago(moment: float | None, now: float) -> str:
    if moment is None:
        return ""
    return f"{format_duration(max(0, round(now - moment)))} ago"


def state_line(box: Box, now: float) -> str:
    words = WORDS.get(box.state, box.state)
    if box.state == "asleep":  # a powered-off box is not asleep to a person: it boots
        words = sleep_actions.get(box.asleep_as).asleep_words if box.asleep_as else words
    line = f'<span class="state {escape(box.state)}">{escape(words)}</span>'
    if box.state == "waking" and box.waking_since is not None:
        line += f" for {round(now - box.waking_since)} s"
        if box.typical_wake is not None:
            line += f" (a wake usually takes {box.typical_wake:g} s here)"
    elif box.since is not None:
        line += f" for {escape(format_duration(max(0, round(now - box.since))))}"
    return line


CELL, ROW, LABEL = 6, 14, 78  # the week's picture: a half-hour's width, a day's height
SCALE = 13  # the height of its hours' row
COLOURS = {"awake": "#f2c94c", "asleep": "#5b6b9a", "woken": "#27ae60", "": "#e8e8e8"}


def week(days: Sequence[Day], kwh_saved: float | None) -> str:
    """The last days, a row a day, a cell a half-hour (history.days): the `sleepyllama history`
    strip, in SVG."""
    if not days:
        return ""
    # the hours along the top: a strip without them says when nothing happened
    rows = [f'<text x="{LABEL + hour * 2 * CELL}" y="9" text-anchor="middle">{hour:02d}</text>'
            for hour in range(0, 25, 6)]
    for index, day in enumerate(days):
        y = SCALE + index * ROW
        rows.append(f'<text x="0" y="{y + 10}">{escape(day.date)}</text>')
        rows += [f'<rect x="{LABEL + cell * CELL}" y="{y}" width="{CELL - 1}" height="{ROW - 3}"'
                 f' fill="{COLOURS.get(kind, COLOURS[""])}"/>' for cell, kind in enumerate(day.cells)]
    asleep = sum(day.asleep_hours for day in days)
    woken = sum(day.wakes for day in days)
    saved = "" if kwh_saved is None else f", {kwh_saved:.2f} kWh saved"
    width, height = LABEL + 48 * CELL + CELL, SCALE + len(days) * ROW
    return (f'<svg class="week" viewBox="0 0 {width} {height}" role="img" aria-label="the last '
            f'{len(days)} days: asleep {asleep:.0f} h, {woken} wakes" font-size="10">'
            + "".join(rows) + f'</svg><p class="note">Last {len(days)} days: asleep '
            f'{asleep:.1f} h, {woken} wake(s){saved}. <span style="color:{COLOURS["asleep"]}">■</span> '
            f'asleep <span style="color:{COLOURS["awake"]}">■</span> awake '
            f'<span style="color:{COLOURS["woken"]}">■</span> woken</p>')


STAY_HOURS = ("1", "3", "8", "24")


def steering(name: str, field: str = "proxy", staying: bool = False) -> str:
    """Stay awake for… and Sleep now, for a box that is up: signed commands to it (steer.py);
    with a stay-awake in effect, its Cancel too. field: "proxy" (the box behind the proxy of
    that name), or "box" (this box, on its own page)."""
    which = f'<input type="hidden" name="{field}" value="{escape(name)}">'
    choices = "".join(f'<option value="{hours}"{" selected" if hours == "3" else ""}>{hours} h'
                      "</option>" for hours in STAY_HOURS)
    cancel = (f'<form method="post" action="/stay-awake-cancel" class="row">{which}<button>'
              "Cancel the stay-awake</button></form>" if staying else "")
    return (f'<form method="post" action="/stay-awake" class="row">{which}<button>Stay awake '
            f'for</button> <select name="hours">{choices}</select></form>{cancel}<form '
            f'method="post" action="/sleep-now" class="row">{which}<button>Sleep now</button>'
            "</form>")


def card(box: Box, may_wake: bool, now: float, can_steer: bool = False) -> str:
    rows = [("backend", box.backend)]
    if box.last_ready is not None and box.state != "waking":
        rows.append(("last answered", ago(box.last_ready, now)))
    if box.clients_waiting:
        rows.append(("waiting", f"{box.clients_waiting} client(s)"))
    if box.last_wake is not None:
        rows.append(("last wake", f"{ago(box.last_wake.at, now)}: {box.last_wake.cause}, "
                                  f"{box.last_wake.outcome}"))
    rows.append(("wakes", f"{box.wakes_total} ({box.give_ups_total} gave up)"))
    if box.models:
        rows.append(("models", ", ".join(box.models)))
    if box.problem:
        rows.append(("note", box.problem))
    if box.staying_until is not None:
        rows.append(("staying awake", "until " + time.strftime("%a %H:%M",
                                                                time.localtime(box.staying_until))))
    if box.learned:
        rows.append(("learned use", "; ".join(box.learned) + (
            "" if box.prewake == "learned" else
            ' (pre-wakes are off: prewake = "learned" turns them on)')))
    if box.next_prewake is not None:
        rows.append(("next pre-wake", time.strftime("%a %H:%M", time.localtime(box.next_prewake))
                     + (f", {box.next_prewake_cause}" if box.next_prewake_cause else "")))
    if box.kwh_counted_under:
        rows.append(("kWh saved", f"counted under {box.kwh_counted_under} (the same box)"))
    details = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in rows)
    if box.state == "awake":
        button = steering(box.name, staying=box.staying_until is not None) if (
            can_steer and may_wake) else ""
    elif box.state == "waking":
        button = ""
    elif may_wake:
        button = (f'<form method="post" action="/wake"><input type="hidden" name="proxy" '
                  f'value="{escape(box.name)}"><button>Wake</button></form>')
    else:
        button = '<p class="note">Your address may not wake this box (wake_from).</p>'
    return (f'<section class="box" id="{escape(box.name)}"><h2>{escape(box.name)}</h2>'
            f"<div>{state_line(box, now)}</div><dl>{details}</dl>{week(box.days, box.kwh_saved)}"
            f"{button}</section>")


def own_card(box: OwnBox, now: float, can_steer: bool) -> str:
    """This GPU box, on its own page: what its last idle check saw, its last days, and Stay
    awake for… and Sleep now through its own steering socket."""
    line = '<span class="state awake">awake</span>'
    if box.reason:
        line += f" · {escape(box.reason)}"
    rows = []
    if box.checked_at is not None:
        rows.append(("looked", ago(box.checked_at, now)))
    rows += [(reading.signal, f"{reading.activity}: {reading.reason}" if reading.reason
              else reading.activity) for reading in box.readings]
    if box.problem:
        rows.append(("note", box.problem))
    details = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in rows)
    button = steering(box.name, "box") if can_steer else (
        '<p class="note">Stay awake and Sleep now need the steering secret '
        "(install.sh server --steer-secret-file).</p>")
    power = "" if box.kwh_saved is not None or not box.power else (
        f'<p class="note">{escape(box.power)}</p>')
    return (f'<section class="box" id="this-box"><h2>{escape(box.name)} (this box)</h2>'
            f"<div>{line}</div><dl>{details}</dl>{week(box.days, box.kwh_saved)}{power}"
            f"{button}</section>")


FOLLOW_FOR = 60  # seconds after a press the page reloads quickly, even before the box says so


def render(boxes: Sequence[Box], may_wake: dict[str, bool], now: float | None = None,
           steering: bool = False, pressed_at: int | None = None,
           own: OwnBox | None = None, problems: Sequence[str] = (),
           said: tuple[str, str, bool] | None = None) -> str:
    """pressed_at: when a Wake button was pressed (the page after it): the page follows the
    wake from then on, whatever the proxy says yet (a loaded box may take a while to).
    own: this host, where it is a GPU box (sleepyllama-web run there); problems: what the
    page itself cannot do (Home Assistant not connected, and why); said: (a box, what came of a
    press of Stay awake or Sleep now, whether it was taken), shown once after the press."""
    now = time.time() if now is None else now
    following = pressed_at is not None and 0 <= now - pressed_at < FOLLOW_FOR
    waking = any(box.state == "waking" for box in boxes)
    refresh = WAKING_REFRESH if waking or following else RESTING_REFRESH
    target = f"/?pressed={pressed_at}" if following else "/"
    cards = (own_card(own, now, steering) if own is not None else "") + "".join(
        card(box, may_wake.get(box.name, False), now, steering) for box in boxes) or (
        "<p>No [proxy.*] or [server.*] table in the config: no box to show.</p>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="refresh" content="{refresh}; url={target}">'
            f"<title>sleepyllama</title><style>{STYLE}</style></head>"
            f"<body><h1>sleepyllama</h1>"
            + "".join(f'<p class="problem">{escape(problem)}</p>' for problem in problems)
            + ("" if said is None else
               f'<p class="{"said" if said[2] else "problem"}">{escape(said[0])}: '
               f"{escape(said[1])}</p>")
            + f"{cards}</body></html>")
