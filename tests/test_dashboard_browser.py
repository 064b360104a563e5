"""The page as a person uses it, in a real headless chromium: a click on Wake sends a real magic
packet, and the page, reloading itself, shows the box waking, then awake."""

from __future__ import annotations

from browser import Chromium
from test_dashboard_program import setup

from conftest import wait_for

STATE = "document.querySelector('.state') && document.querySelector('.state').textContent"


def test_a_click_on_wake_wakes_the_box_and_the_page_shows_it(tmp_path, cleanup) -> None:
    backend, _proxy, web = setup(tmp_path, cleanup)
    browser = Chromium()
    cleanup.append(browser)
    browser.navigate(web.url("/"))
    assert browser.wait_for(STATE, what="the box's state") == "not heard from yet"
    assert not backend.packets()
    browser.evaluate("document.querySelector('form button').click()")
    shown = browser.wait_for(f"['waking', 'awake'].includes({STATE}) && {STATE}",
                             what="the page after the click")
    assert shown in ("waking", "awake")
    wait_for(lambda: backend.packets(), what="a magic packet from the click")
    # the page reloads itself every 2 s while a box wakes: no JavaScript of ours
    browser.wait_for(f"{STATE} === 'awake'", timeout=30, what="the page saying awake")
    assert browser.evaluate("document.querySelector('form')") is None  # nothing to press now
    assert browser.evaluate("document.scripts.length") == 0
