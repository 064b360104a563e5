"""Who waits for the backend and how each leaves (proxy/waiting.py), on real sockets in one
event loop: in arrival order once ready, dropped at once on a hang-up (its request still
unread), a 503 past its deadline with the give-up in the ledger once."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from sleepyllama import config, ledger
from sleepyllama.proxy.client import Asker, Client
from sleepyllama.proxy.waiting import Waiting
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import WakeState

PROXY = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                     ).proxy("t")


def waiting(loop: asyncio.AbstractEventLoop, closed: list[int], ledger_file: Path | None = None
            ) -> Waiting:
    return Waiting(WakeContext(
        PROXY, loop, WakeRecord(), WakeState(loop.time),
        to_ledger=lambda entry: ledger_file and ledger.append(ledger_file, entry),
        closed=lambda: closed.append(1)))


def held_client(room: Waiting, peer: str, deadline: float = 0.0) -> socket.socket:
    ours, theirs = socket.socketpair()
    ours.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
    room.hold(Client(theirs, peer, deadline=deadline))
    return ours


def test_the_held_leave_in_arrival_order_their_requests_unread() -> None:
    async def scenario() -> tuple[list[str], bytes]:
        room = waiting(asyncio.get_running_loop(), [])
        ours = [held_client(room, f"client-{n}") for n in range(3)]
        clients = room.ready()
        unread = clients[0].sock.recv(100, socket.MSG_PEEK)
        for sock in ours + [client.sock for client in clients]:
            sock.close()
        room.close()
        return [client.peer for client in clients], unread

    peers, unread = asyncio.run(scenario())
    assert peers == ["client-0", "client-1", "client-2"]
    assert unread.startswith(b"GET /health")


def test_one_that_hangs_up_is_dropped_at_once_and_its_slot_given_back() -> None:
    async def scenario() -> tuple[int, list[int]]:
        loop, closed = asyncio.get_running_loop(), []
        room = waiting(loop, closed)
        stays, leaves = held_client(room, "stays"), held_client(room, "leaves")
        leaves.close()
        while not closed:
            await asyncio.sleep(0.01)
        left = len(room)
        stays.close()
        room.close()
        return left, closed

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == (1, [1])


def test_one_held_past_its_deadline_gets_a_503_and_the_give_up_is_recorded_once(
        tmp_path: Path) -> None:
    ledger_file = tmp_path / "ledger.jsonl"

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        room = waiting(loop, [], ledger_file)
        room.record.first_signal(loop.time(), "client-0", "GET /health", "")
        ours = [held_client(room, f"client-{n}", deadline=loop.time() + 0.05) for n in range(2)]
        answers = []
        for sock in ours:
            sock.setblocking(False)
            answers.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 30))
            sock.close()
        return answers

    answers = asyncio.run(scenario())
    assert all(answer.startswith(b"HTTP/1.1 503") for answer in answers), answers
    gave_up = [entry for entry in ledger.read(ledger_file)
               if isinstance(entry, ledger.Wake) and entry.gave_up_after is not None]
    assert len(gave_up) == 1 and gave_up[0].first == "client-0"


def test_a_wake_button_press_keeps_a_wake_going_but_is_nobody_shown_waiting() -> None:
    async def scenario() -> tuple[int, int, bool]:
        loop = asyncio.get_running_loop()
        room = waiting(loop, [])
        task = loop.create_task(room.wait(Asker("the page", "Wake button")))
        await asyncio.sleep(0)  # it is waiting now
        counts = len(room), room.on_sockets()
        room.ready()
        return (*counts, await task)

    assert asyncio.run(scenario()) == (1, 0, True)
