#!/usr/bin/env python3
"""README's pictures of the page (sleepyllama-web), taken in Debian's headless chromium at a
phone's width: a box asleep, waking, and awake, after a made-up week of nights asleep. The box
is the tests' fake llama-server behind a real proxy, started by a real magic packet, as in
tests/dashboard/test_browser.py. Then the GPU box's own page, from a made-up idle check and a
made-up week in the box's own ledger.

  .venv/bin/python tools/page_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Chromium  # noqa: E402 (the tests' helpers, found through sys.path)

from sleepyllama import hints, history, ledger  # noqa: E402

from conftest import MAC, ProxyRun, SleepingBackend, udp_to, wait_for  # noqa: E402
from dashboard.test_program import Web  # noqa: E402

STATE = "document.querySelector('.state') && document.querySelector('.state').textContent"


def a_week_before(ledger_file: Path, now: float) -> None:
    """Six days of nights asleep and mornings woken in the proxy's ledger, for the picture:
    written as the proxy writes them, their moments moved back."""
    moments: list[tuple[float, str, dict]] = []
    for back in range(6, 0, -1):
        day = history.day_start(now - back * 86400 + 3600)
        for asleep, woken in ((0.5, 8.0), (12.5, 13.25), (19.0, 20.5)):
            moments.append((day + asleep * 3600, "box-sleeping",
                            {"action": "suspend", "saving_watts": 183}))
            moments.append((day + woken * 3600, "wake", {
                "first": "192.168.1.20:51234", "request": "POST /v1/chat/completions",
                "signals": 3, "ready_after": 8.5}))
    for _, event, fields in moments:
        ledger.append(ledger_file, event, **fields)
    lines = ledger_file.read_text().splitlines()
    written = [json.loads(line) for line in lines]
    for entry, (at, _, _) in zip(written[-len(moments):], moments, strict=True):
        entry["at"] = round(at, 3)
    ledger_file.write_text("".join(json.dumps(entry) + "\n" for entry in written))


READINGS = [("servers", "llama: nothing in flight, nothing since the last check"),
            ("gpu", "GPU 0 P8"), ("gpu-processes", "no GPU process but the servers"),
            ("sessions", "nobody logged in"), ("inhibitors", "no sleep inhibitor")]


def a_box_of_its_own(directory: Path, now: float) -> Path:
    """The idle unit's StateDirectory as a GPU box that slept its nights would have it: the
    last idle check (idle.json) and a week of sleeps in its ledger; returns the directory."""
    box = directory / "box"
    box.mkdir()
    (box / "idle.json").write_text(json.dumps({
        "boot_id": "made-up", "idle_since": now - 1500, "checked_at": now - 12,
        "verdict": "stay awake", "reason": "idle for 25m, sleeping in 35m", "idle_for": 1500.0,
        "sleep_in": 2100.0, "idle_watts": {"watts": 95.0, "samples": 400},
        "readings": [{"signal": signal, "activity": "idle", "reason": reason}
                     for signal, reason in READINGS]}))
    moments: list[tuple[float, str, dict]] = []
    for back in range(6, 0, -1):
        day = history.day_start(now - back * 86400 + 3600)
        for asleep, woken in ((0.5, 8.0), (12.5, 13.25), (19.0, 20.5)):
            moments += [(day + asleep * 3600, "sleep", {"reason": "idle for 1h"}),
                        (day + asleep * 3600 + 5, "suspend", {"kind": "suspend"}),
                        (day + woken * 3600, "resume", {})]
    ledger_file = box / "ledger.jsonl"
    for _, event, fields in moments:
        ledger.append(ledger_file, event, **fields)
    written = [json.loads(line) for line in ledger_file.read_text().splitlines()]
    for entry, (at, _, _) in zip(written, moments, strict=True):
        entry["at"] = round(at, 3)
    ledger_file.write_text("".join(json.dumps(entry) + "\n" for entry in written))
    return box


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="sleepyllama-page-"))
    state = directory / "state"
    state.mkdir()
    stop: list = []
    try:
        backend = SleepingBackend(directory, load_seconds=8.0)
        stop.append(backend)
        table = (f'[proxy.llama]\nbackend = "127.0.0.1:{backend.port}"\nmac = "{MAC}"\n'
                 f'broadcast = "127.255.255.255"\nwol_port = {backend.wol_port}\n'
                 'answer_while_asleep = []\n')
        a_week_before(state / "llama.ledger.jsonl", time.time())
        proxy = ProxyRun(directory, table, activate=False, state_directory=state)
        stop.append(proxy)
        udp_to(proxy.address, hints.encode(hints.Hint("sleeping", action="suspend")))
        wait_for(lambda: '"state":"asleep"' in (state / "llama.live.json").read_text(),
                 what="the proxy believing the box asleep")
        web = Web(directory, proxy.config, state)
        stop.append(web)
        browser = Chromium(width=420, height=700)
        stop.append(browser)
        browser.navigate(web.url("/"))
        browser.wait_for(f"{STATE} === 'asleep'", what="the page saying asleep")
        browser.screenshot(args.out / "page-asleep.png")
        browser.evaluate("document.querySelector('form button').click()")
        browser.wait_for(f"{STATE} === 'waking'", what="the page saying waking")
        time.sleep(3.5)  # a few seconds into the wake, as a person would see it
        browser.navigate(web.url("/"))
        browser.wait_for(f"{STATE} === 'waking'", what="the page saying waking")
        browser.screenshot(args.out / "page-waking.png")
        browser.wait_for(f"{STATE} === 'awake'", timeout=60, what="the page saying awake")
        browser.screenshot(args.out / "page-awake.png")
        # the GPU box's own page (install.sh server --web), its buttons shown (a secret there)
        credentials = directory / "credentials"
        credentials.mkdir()
        (credentials / "steer-secret").write_text("made-up-secret-of-the-pictures\n")
        config = directory / "box.toml"
        config.write_text('[server.llama]\ncommand = ["/bin/true"]\n[energy]\nbase_watts = 60\n')
        own = Web(directory, config, directory / "no-proxies",
                  {"CREDENTIALS_DIRECTORY": str(credentials)}, a_box_of_its_own(directory, time.time()))
        stop.append(own)
        browser.navigate(own.url("/"))
        browser.wait_for("document.querySelector('#this-box') !== null", what="the box's page")
        browser.screenshot(args.out / "page-box.png")
    finally:
        for thing in reversed(stop):
            thing.stop()
    print(f"wrote {args.out}/page-asleep.png, page-waking.png, page-awake.png, page-box.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
