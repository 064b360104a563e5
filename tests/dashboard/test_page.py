"""The page's HTML: every state said in words, what came from files escaped, buttons only
where they may be pressed, and a page that follows a wake without JavaScript."""

from __future__ import annotations

from sleepyllama.dashboard.boxes import Box, LastWake
from sleepyllama.dashboard.page import RESTING_REFRESH, WAKING_REFRESH, render

NOW = 1_800_000_000.0


def test_a_sleeping_box_offers_its_wake_button_where_allowed() -> None:
    box = Box("llama", "10.0.0.5:8080", "asleep", since=NOW - 3600, models=["qwen3-8b"],
              last_wake=LastWake(NOW - 7200, "10.0.0.2:5000 POST /v1/chat/completions",
                                 "ready after 8.1s, 2 wake signals"))
    html = render([box], {"llama": True}, NOW)
    assert 'class="state asleep">asleep</span> for 1h' in html
    assert '<form method="post" action="/wake">' in html and 'value="llama"' in html
    assert "qwen3-8b" in html and "ready after 8.1s" in html
    assert f'content="{RESTING_REFRESH}; url=/"' in html
    assert "<script" not in html  # everything works without JavaScript
    assert "may not wake" in render([box], {"llama": False}, NOW)
    assert "<form" not in render([box], {"llama": False}, NOW)


def test_a_waking_box_says_for_how_long_and_the_page_follows_it() -> None:
    box = Box("llama", "10.0.0.5:8080", "waking", waking_since=NOW - 4, typical_wake=8.0,
              clients_waiting=2)
    html = render([box], {"llama": True}, NOW)
    assert "waking</span> for 4 s (a wake usually takes 8 s here)" in html
    assert f'content="{WAKING_REFRESH}; url=/"' in html
    assert "<form" not in html  # nothing to press while it wakes


def test_what_comes_from_files_is_escaped() -> None:
    box = Box("llama", "10.0.0.5:8080", "asleep", models=["<script>alert(1)</script>"],
              problem='"><img src=x>')
    html = render([box], {"llama": True}, NOW)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert "<img" not in html


def test_the_week_is_a_picture_with_its_figures_in_words() -> None:
    from sleepyllama.history import Day

    days = [Day(f"Mon 11-{23 + i}", ["asleep"] * 40 + ["woken"] + ["awake"] * 7, 20.0, 1, None)
            for i in range(7)]
    box = Box("llama", "10.0.0.5:8080", "awake", days=days)
    html = render([box], {"llama": True}, NOW)
    assert html.count("<rect") == 7 * 48
    assert 'aria-label="the last 7 days: asleep 140 h, 7 wakes"' in html
    assert "asleep 140.0 h, 7 wake(s)" in html
    assert "<svg" not in render([Box("llama", "10.0.0.5:8080", "awake")], {"llama": True}, NOW)
    assert "kWh" not in html  # the box never said what its sleeps save
    box.kwh_saved = 3.456
    assert "asleep 140.0 h, 7 wake(s), 3.46 kWh saved" in render([box], {"llama": True}, NOW)


def test_after_a_press_the_page_follows_the_wake_before_the_proxy_says_so() -> None:
    """A loaded box's proxy may say "waking" only after the page came back from the press: the
    page then still reloads quickly, for a minute, not every 30 s."""
    from sleepyllama.dashboard.page import FOLLOW_FOR

    box = Box("llama", "10.0.0.5:8080", "asleep")
    pressed = int(NOW) - 5
    html = render([box], {"llama": True}, NOW, pressed_at=pressed)
    assert f'content="{WAKING_REFRESH}; url=/?pressed={pressed}"' in html
    later = render([box], {"llama": True}, NOW + FOLLOW_FOR, pressed_at=pressed)
    assert f'content="{RESTING_REFRESH}; url=/"' in later


def test_a_powered_off_box_reads_powered_off_and_the_week_has_its_hours() -> None:
    """Found by trying it: a powered-off box read "asleep" (a person waits a boot, not a
    resume), and the day strip had no hour scale."""
    from sleepyllama.history import Day

    box = Box("llama", "10.0.0.5:8080", "asleep", since=NOW - 60, asleep_as="poweroff",
              days=[Day("Mon 11-23", ["asleep"] * 48, 24.0, 0, None)])
    html = render([box], {"llama": True}, NOW)
    assert 'class="state asleep">powered off</span>' in html
    assert all(f">{hour:02d}</text>" in html for hour in (0, 6, 12, 18, 24))
    box.asleep_as = "suspend"
    assert 'class="state asleep">asleep</span>' in render([box], {"llama": True}, NOW)


def test_the_learned_times_and_the_next_pre_wake_are_shown(utc) -> None:
    box = Box("llama", "10.0.0.5:8080", "asleep", prewake="learned",
              next_prewake=NOW + 3600, next_prewake_cause="learned: weekdays about 08:25",
              learned=["weekdays about 08:25", "Sat about 10:00"])
    html = render([box], {"llama": True}, NOW)
    assert "<dt>learned use</dt><dd>weekdays about 08:25; Sat about 10:00</dd>" in html
    assert "<dt>next pre-wake</dt><dd>Fri 09:00, learned: weekdays about 08:25</dd>" in html
    off = render([Box("llama", "10.0.0.5:8080", "asleep", learned=["weekdays about 08:25"])],
                 {"llama": True}, NOW)
    assert "(pre-wakes are off: prewake = &quot;learned&quot; turns them on)" in off
    assert "next pre-wake" not in off
