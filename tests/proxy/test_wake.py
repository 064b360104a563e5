"""The wake (proxy/wake.py) in one process, through its Backend, the readiness probe replaced:
what a real network makes hard to time (a hint during a probe, a 200 then a failed connect, a
wrong "sleeping" hint, a wake its client left)."""

from __future__ import annotations

import asyncio
import errno
import socket

from sleepyllama import config

from conftest import free_port
from proxy.stand_ins import NoSignal


class FirstProbeHangs:
    """A probe whose first call blocks until released (a SYN a sleeping box never answers, or
    a probe still under way when a hint comes); the later ones answer `then` at once."""

    def __init__(self, first: tuple[bool, str], then: tuple[bool, str]) -> None:
        import threading

        self.first, self.then = first, then
        self.hanging, self.release = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        if self.calls == 1:
            self.hanging.set()
            self.release.wait(60)
            return self.first
        return self.then


async def hint_while_a_probe_hangs(proxy: config.ProxyConfig, probe: FirstProbeHangs):
    """A Backend holding one client whose wake's first probe hangs, told "ready" by a hint
    meanwhile: (the backend, the test's end of the client's socket)."""
    from sleepyllama import hints
    from sleepyllama.proxy.backend import Backend

    loop = asyncio.get_running_loop()
    backend = Backend(proxy, loop, NoSignal(), probe=probe)
    ours, theirs = socket.socketpair()
    backend.serve(theirs, "client")
    await loop.run_in_executor(None, probe.hanging.wait, 10)
    backend.wake.hinted(hints.Hint("ready", "llama"), "box")
    return backend, ours


def test_a_client_held_again_after_the_200_gets_a_wake_of_its_own(monkeypatch) -> None:
    """The probe said 200, but the connect failed at once (the server went away in between):
    the client was held again with no wake loop probing for it, and got its 503 at the timeout
    though the backend came back a second later."""
    from sleepyllama.proxy.backend import Backend

    port = free_port()
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{port}"\nmac = "ab:cd:ef:01:23:45"\n'
                         'wake_timeout = "20s"\nanswer_while_asleep = []\n').proxy("t")
    listener: list[socket.socket] = []
    probes = []

    def probe() -> tuple[bool, str]:
        probes.append(1)
        if len(probes) == 1:
            return True, "HTTP 200"  # and yet nothing listens: the connect is refused
        return (True, "HTTP 200") if listener else (False, "Connection refused")

    real_connect_ex, refused_once = socket.socket.connect_ex, []

    def connect_ex(sock: socket.socket, address: object) -> int:
        if not refused_once:  # at once, as a connect to a vanished LAN host can fail
            refused_once.append(address)
            return errno.ECONNREFUSED
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=probe)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        backend.serve(theirs, "client")
        await loop.sock_sendall(ours, b"hello")
        await asyncio.sleep(1.0)
        server = socket.create_server(("127.0.0.1", port))  # the backend is back
        listener.append(server)
        server.setblocking(False)
        accepted, _ = await asyncio.wait_for(loop.sock_accept(server), 10)
        accepted.setblocking(False)
        received = await asyncio.wait_for(loop.sock_recv(accepted, 100), 10)
        await loop.sock_sendall(accepted, b"world")
        answer = await asyncio.wait_for(loop.sock_recv(ours, 100), 10)
        for sock in (accepted, server, ours):
            sock.close()
        backend.close_all()
        return received + b" " + answer

    assert asyncio.run(scenario()) == b"hello world"
    assert len(probes) > 2  # probed again after the failed connect


def test_a_ready_hint_during_a_probe_asks_for_the_next_at_once(monkeypatch) -> None:
    """A hint that came while a probe was under way was cleared with it: the proxy waited for
    its next poll (the bench's wake lag with hints stayed at 60 ms)."""
    from sleepyllama.proxy import wake as wake_module

    monkeypatch.setattr(wake_module, "PROBE_INTERVAL", 30.0)  # only a hint can be this quick
    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\n').proxy("t")
    probe = FirstProbeHangs((False, "HTTP 503"), (False, "HTTP 503"))

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        backend, ours = await hint_while_a_probe_hangs(proxy, probe)
        probe.release.set()  # the hint came while this one ran
        started = loop.time()
        while probe.calls < 2 and loop.time() - started < 10:
            await asyncio.sleep(0.01)
        backend.close_all()
        ours.close()
        return probe.calls

    assert asyncio.run(scenario()) >= 2, "the hint was lost: no probe until the next poll"


def test_a_hint_while_a_probe_hangs_is_acted_on_at_once(monkeypatch, tmp_path) -> None:
    """A probe to a suspended box on a LAN hangs (the box answers nothing): the next probe, and
    the one a "ready" hint asks for, waited behind it for its whole connect timeout."""
    from sleepyllama.proxy import wake as wake_module

    monkeypatch.setattr(wake_module, "PROBE_INTERVAL", 3600.0)  # only the hint asks again
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(20)
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{server.getsockname()[1]}"\n'
                         'mac = "ab:cd:ef:01:23:45"\nanswer_while_asleep = []\n').proxy("t")
    probe = FirstProbeHangs((False, "timed out"), (True, "HTTP 200"))  # a SYN never answered

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        backend, ours = await hint_while_a_probe_hangs(proxy, probe)
        accepted, _ = await loop.run_in_executor(None, server.accept)  # the client, passed on
        passed_on_while_hanging = not probe.release.is_set()
        probe.release.set()
        for sock in (accepted, ours):
            sock.close()
        backend.close_all()
        return passed_on_while_hanging

    assert asyncio.run(scenario()), "the client was passed on only after the hanging probe ended"
    server.close()


def test_a_wrong_sleeping_hint_does_not_teach_a_wake(tmp_path) -> None:
    """A "sleeping" hint (spoofed, or wrong) while the box is awake: the next client sent a
    packet at once and recorded a wake with ready_after 0, which dragged the learned wake time
    and Retry-After towards 0."""
    from sleepyllama import hints, ledger
    from sleepyllama.proxy.backend import Backend

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(20)
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{server.getsockname()[1]}"\n'
                         'mac = "ab:cd:ef:01:23:45"\nanswer_while_asleep = []\n').proxy("t")
    ledger_file = tmp_path / "ledger.jsonl"
    signal = NoSignal()

    def probe() -> tuple[bool, str]:
        # an awake box answers in a moment, which is after the packet went out
        import time
        time.sleep(0.05)
        return True, "HTTP 200"

    async def scenario() -> Backend:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, signal, probe=probe, ledger_file=ledger_file)
        backend.wake.hinted(hints.Hint("sleeping", "box"), "somebody")
        ours, theirs = socket.socketpair()
        backend.serve(theirs, "client")
        accepted, _ = await loop.run_in_executor(None, server.accept)
        for sock in (accepted, ours):
            sock.close()
        backend.close_all()
        return backend

    backend = asyncio.run(scenario())
    server.close()
    assert signal.sent == 1  # believed asleep: the packet went out at once, as it should
    assert not [entry for entry in ledger.read(ledger_file) if entry.event == "wake"]
    assert backend.wake.record.past == []


def test_a_wake_that_sent_a_signal_runs_on_after_its_client_left(tmp_path) -> None:
    """Open WebUI gives up on its first look at the model list after 10 s: the wake stopped,
    "no client waits any more", with the box half-way up and nothing kept for the next look."""
    import time

    from sleepyllama import ledger
    from sleepyllama.proxy.backend import Backend

    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\nwake_timeout = "60s"\n').proxy("t")
    ledger_file = tmp_path / "ledger.jsonl"
    signal, up_at = NoSignal(), []

    def probe() -> tuple[bool, str]:
        if signal.sent and not up_at:
            up_at.append(time.monotonic() + 1.0)  # the box comes up a second after the packet
        return (True, "HTTP 200") if up_at and time.monotonic() > up_at[0] else (
            False, "Connection refused")

    async def scenario() -> bool:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, signal, probe=probe, ledger_file=ledger_file)
        ours, theirs = socket.socketpair()
        backend.serve(theirs, "client")
        deadline = loop.time() + 20
        while not signal.sent and loop.time() < deadline:
            await asyncio.sleep(0.01)
        ours.close()  # the frontend gave up
        while backend.wake.task is not None and loop.time() < deadline:
            await asyncio.sleep(0.01)
        believed = backend.wake.belief.readiness.is_ready(loop.time())
        backend.close_all()
        return believed

    assert asyncio.run(scenario()), "the wake stopped before the box was ready"
    wakes = [entry for entry in ledger.read(ledger_file) if entry.event == "wake"]
    assert len(wakes) == 1 and wakes[0].ready_after is not None, wakes


def test_a_backend_that_answers_after_a_failed_wake_is_no_longer_said_to_have_failed() -> None:
    """STATUS kept "backend did not wake within 3m" after the backend was back."""
    from sleepyllama.proxy.backend import Backend

    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\n').proxy("t")

    async def scenario() -> tuple[bool, bool, float | None]:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"))
        record = backend.wake.record
        record.give_up(loop.time())
        gave_up_before = record.gave_up
        assert await backend.wake.look() == "awake"  # a look finds it answering
        backend.close_all()
        return gave_up_before, record.gave_up, record.last_give_up

    assert asyncio.run(scenario()) == (True, False, None)


def test_a_box_up_with_nothing_on_its_port_is_told_to_the_client_soon(monkeypatch) -> None:
    """A wrong port, or a server on 127.0.0.1: the box answered "Connection refused" all along,
    and the client got the 503 that names the cause after 3 minutes and 60 magic packets."""
    from sleepyllama.kinds.llama_server import LlamaServer
    from sleepyllama.proxy.backend import Backend

    monkeypatch.setattr(LlamaServer, "listens_within", 0.5)
    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         'kind = "llama-server"\nanswer_while_asleep = []\n'
                         'wake_timeout = "3m"\n').proxy("t")

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (False, "Connection refused"))
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        await loop.sock_sendall(ours, b"GET /v1/models HTTP/1.1\r\nHost: b\r\n\r\n")
        backend.serve(theirs, "client")
        answer = await asyncio.wait_for(loop.sock_recv(ours, 4096), 20)
        ours.close()
        backend.close_all()
        return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b"nothing listens on port 9" in answer and b"backend_not_listening" in answer


def test_each_sleep_the_box_tells_is_one_line_of_the_ledger_however_often_said(tmp_path) -> None:
    """The page draws the box's sleeps from the ledger: each "sleeping" hint after the box was
    heard awake is recorded (it was, only when the way it sleeps changed); the same hint
    again, or a flood of spoofed ones, adds nothing."""
    from sleepyllama import hints, ledger
    from sleepyllama.proxy.backend import Backend

    proxy = config.parse('[proxy.t]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\n').proxy("t")
    ledger_file = tmp_path / "ledger.jsonl"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"),
                          ledger_file=ledger_file)
        for _ in range(3):
            backend.wake.hinted(hints.Hint("sleeping", action="suspend"), "box")
        backend.wake.belief.believe_ready()  # it answered again
        backend.wake.hinted(hints.Hint("sleeping", action="suspend", saving_watts=183), "box")
        backend.close_all()

    asyncio.run(scenario())
    said = [entry for entry in ledger.read(ledger_file) if entry.event == "box-sleeping"]
    assert len(said) == 2, said
    # what the sleep saves, as the box said it: the page counts the kWh
    assert said[0].saving_watts is None and said[1].saving_watts == 183, said


def test_the_program_is_told_once_the_held_clients_are_connected() -> None:
    """STATUS and live.json are written when the state changes; the wake used to tell the
    program as its probe said ready, before it connected the clients it held, and a held
    client's first byte waited for a file written (the hinted wake lag, 6 to 10 ms)."""
    from sleepyllama.proxy.backend import Backend

    server = socket.create_server(("127.0.0.1", 0))
    proxy = config.parse(f'[proxy.t]\nbackend = "127.0.0.1:{server.getsockname()[1]}"\n'
                         'mac = "ab:cd:ef:01:23:45"\nanswer_while_asleep = []\n').proxy("t")
    seen: list[tuple[str, int]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=lambda: (True, "HTTP 200"),
                          on_change=lambda: seen.append((backend.wake.state(),
                                                         len(backend.connector.splices))))
        ours, theirs = socket.socketpair()
        ours.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
        backend.serve(theirs, "client")
        while not seen:
            await asyncio.sleep(0.01)
        backend.close_all()
        ours.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    server.close()
    assert seen[0] == ("awake", 1), seen
