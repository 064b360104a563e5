"""The page as a person uses it, in a real headless chromium: a click on Wake sends a real magic
packet, and the page, reloading itself, shows the box waking, then awake."""

from __future__ import annotations

from browser import Chromium

from conftest import wait_for
from dashboard.test_program import setup

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


def test_a_page_reached_under_another_name_shows_nothing_and_presses_nothing(
        tmp_path, cleanup) -> None:
    """DNS rebinding, as a browser lives it: a name the attacker owns made to point at the
    page. The page's own origin under that name is the attacker's, so the same-origin check
    alone let it press Wake; only the page's names are answered now."""
    backend, proxy, web = setup(tmp_path, cleanup)
    browser = Chromium(names={"evil.example": "127.0.0.1", "llm.home.arpa": "127.0.0.1"})
    cleanup.append(browser)
    # the attacker's script came with the attacker's page, under its own policy, not the one
    # the page's answer carries
    browser.call("Page.setBypassCSP", session=True, enabled=True)
    browser.navigate(f"http://evil.example:{web.port}/")
    text = browser.wait_for("document.body && document.body.innerText", what="the answer")
    assert "does not answer to that name" in str(text), text
    assert browser.evaluate("document.querySelector('form')") is None
    # a form posted from the attacker's page, as its script would
    browser.evaluate("fetch('/wake', {method: 'POST', body: new URLSearchParams('proxy=llama')})"
                     ".then(r => document.title = 'status ' + r.status)")
    assert browser.wait_for("document.title.startsWith('status') && document.title",
                            what="the attacker's post answered") == "status 421"
    assert not backend.packets() and "asked" not in proxy.log()
    # the same page under a name its user gave it works as under its address
    proxy.config.write_text(proxy.config.read_text() + '[web]\nnames = ["llm.home.arpa"]\n')
    browser.navigate(f"http://llm.home.arpa:{web.port}/")
    assert browser.wait_for(STATE, what="the box's state") == "not heard from yet"
    browser.evaluate("document.querySelector('form button').click()")
    wait_for(lambda: backend.packets(), what="a magic packet from the click")
