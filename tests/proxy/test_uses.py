"""Where use begins while the box is up (proxy/uses.py): the first client after a quiet hour,
noted in the ledger for learned pre-wakes."""

from __future__ import annotations

import asyncio
import socket

from sleepyllama import config, learned, ledger
from sleepyllama.proxy.uses import Uses


def test_the_first_client_after_a_quiet_hour_is_noted_once() -> None:
    now, noted = [1000.0], []
    uses = Uses(lambda: now[0], lambda entry: noted.append((entry.event, {"client": entry.client})))
    uses.connected("10.0.0.2:5000")
    assert noted == [], "a fresh proxy knows of no quiet before it"
    now[0] += learned.QUIET - 1
    uses.connected("10.0.0.2:5001")
    assert noted == []
    now[0] += learned.QUIET
    uses.connected("10.0.0.2:5002")
    uses.connected("10.0.0.2:5003")
    assert noted == [("first-use", {"client": "10.0.0.2:5002"})]


def test_a_client_connected_to_a_ready_backend_after_a_quiet_hour_is_in_the_ledger(
        tmp_path) -> None:
    from sleepyllama.proxy.backend import Backend

    from proxy.stand_ins import NoSignal

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(20)
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{server.getsockname()[1]}"\n'
                         'mac = "ab:cd:ef:01:23:45"\nanswer_while_asleep = []\n').proxy("t")
    ledger_file = tmp_path / "t.ledger.jsonl"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"),
                          ledger_file=ledger_file)
        backend.uses.last -= learned.QUIET  # an hour of quiet, without waiting it out
        ours, theirs = socket.socketpair()
        backend.serve(theirs, "10.0.0.2:5000")
        accepted, _ = await loop.run_in_executor(None, server.accept)
        for sock in (accepted, ours):
            sock.close()
        backend.close_all()

    asyncio.run(scenario())
    server.close()
    used = [entry for entry in ledger.read(ledger_file) if entry.event == "first-use"]
    assert [entry.client for entry in used] == ["10.0.0.2:5000"]
