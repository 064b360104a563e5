"""The GPU box tells the proxy: the datagram's format, what a proxy does with one, and who
sends them (the supervisor when READY)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from sleepyllama import hints, ledger
from sleepyllama.config import Address
from sleepyllama.hints import Hint, RateLimit, SenderLimits, decode, encode
from sleepyllama.proxy.wake_context import WakeContext

from conftest import (
    FAKE_SERVER,
    MAC,
    NotifySocket,
    Process,
    ProxyRun,
    SleepingBackend,
    free_port,
    http_request,
    proxy_table,
    udp_to,
    wait_for,
)


def test_format_round_trip_and_what_is_not_a_hint() -> None:
    for hint in (Hint("ready", "llama"), Hint("sleeping"), Hint("wake", "192.168.1.7"),
                 Hint("wake", "fd00::7")):
        assert decode(encode(hint)) == hint
    assert encode(Hint("ready", "llama")) == b"sleepyllama-hint 1 ready llama\n"
    for junk in (b"", b"hello", b"sleepyllama-hint 2 ready", b"sleepyllama-hint 1 reboot",
                 b"sleepyllama-hint 1 ready " + b"x" * 300, b"\xff" * 50,
                 b"sleepyllama-hint 1 ready a b"):
        assert decode(junk) is None, junk


def test_a_flood_costs_one_action_a_second() -> None:
    limit = RateLimit(per_second=1.0, burst=3)
    assert [limit.allow(0.0) for _ in range(10)].count(True) == 3
    assert limit.allow(0.5) is False and limit.allow(1.1) is True


def wake_directly(backend: SleepingBackend) -> None:
    """The box woke by itself (a person pressed its button): the proxy had no part in it."""
    udp_to(("127.0.0.1", backend.wol_port), b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16)
    wait_for(backend.ready_file.exists, what="the backend up")


def test_a_ready_hint_makes_the_proxy_look_and_keep_the_answers(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    state = tmp_path / "state"
    state.mkdir()
    proxy = ProxyRun(tmp_path, proxy_table(backend), activate=False, state_directory=state)
    cleanup.append(proxy)
    wait_for(lambda: "serving llama" in proxy.log(), what="the proxy")
    wake_directly(backend)
    assert not (state / "llama.answers.json").exists()
    udp_to(proxy.address, encode(Hint("ready", "llama")))
    wait_for(lambda: (state / "llama.answers.json").exists(), what="the answers kept on the hint")
    assert "hint from 127.0.0.1:" in proxy.log() and "llama is ready" in proxy.log()
    assert len(backend.packets()) == 1  # ours: the proxy sent none


def test_a_sleeping_hint_starts_the_next_wake_at_once(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.2)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend, wol_interval="0.5s"), activate=False)
    cleanup.append(proxy)
    get = b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    assert http_request(proxy.address, get).startswith(b"HTTP/1.1 200")  # woken, trusted 5 s
    packets = len(backend.packets())
    backend.kill_server()
    udp_to(proxy.address, encode(Hint("sleeping")))
    wait_for(lambda: "the box is going to sleep" in proxy.log(), what="the hint taken")
    assert http_request(proxy.address, get).startswith(b"HTTP/1.1 200")
    # no connect was tried and failed first: the wake began with a packet at once
    assert "it may be asleep" not in proxy.log()
    assert len(backend.packets()) > packets


def test_spoofed_oversized_and_flooding_datagrams_do_nothing_worse(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    proxy = ProxyRun(tmp_path, proxy_table(backend), activate=False)
    cleanup.append(proxy)
    for junk in (b"x" * 2000, b"GET / HTTP/1.1\r\n\r\n", b"sleepyllama-hint 1 reboot"):
        udp_to(proxy.address, junk)
    for _ in range(200):
        udp_to(proxy.address, encode(Hint("ready", "llama")))
    def acted() -> int:
        return proxy.log().count("INFO: hint from")

    started = time.monotonic()
    wait_for(lambda: proxy.log().count("ignored a datagram from") + acted() >= 203,
             what="the flood read")
    # three at once, then one a second, however long the flood took to read here
    assert acted() <= 3 + int(time.monotonic() - started) + 1, "each hint of a flood was acted on"
    assert backend.packets() == []  # asleep, and nothing woke it
    answer = http_request(proxy.address, b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")  # and it still serves


def test_the_supervisor_tells_the_proxies_when_its_server_is_ready(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(30)
    port = free_port()
    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[server.llama]\ncommand = ["{sys.executable}", "{FAKE_SERVER}", "--port", '
                      f'"{port}", "--load-seconds", "0.5"]\n'
                      f'[notify]\nproxies = ["127.0.0.1:{listener.getsockname()[1]}"]\n')
    notify = NotifySocket(tmp_path / "notify")
    supervisor = Process([sys.executable, "-m", "sleepyllama.host.supervisor", "--config",
                          str(config), "--instance", "llama"], tmp_path / "supervisor.log",
                         {"NOTIFY_SOCKET": str(notify.path), "PATH": "/usr/bin:/bin"})
    try:
        datagram, _ = listener.recvfrom(1024)
        assert decode(datagram) == Hint("ready", "llama", port=port)  # the port it serves on
        wait_for(lambda: any("READY=1" in message for message in notify.messages), what="READY=1")
    finally:
        supervisor.stop()
        notify.close()
        listener.close()


def test_send_never_raises() -> None:
    hints.send([Address("no-such-host.invalid", 9)], Hint("sleeping"))
    hints.send([Address("127.0.0.1", free_port())], Hint("sleeping"))  # nobody listens: no error


def test_a_ready_hint_can_say_the_server_runs_on_the_cpu() -> None:
    on_cpu = Hint("ready", "llama", on_cpu=True)
    assert encode(on_cpu) == b"sleepyllama-hint 1 ready llama cpu\n"
    assert decode(encode(on_cpu)) == on_cpu
    assert decode(b"sleepyllama-hint 1 ready llama gpu\n") is None


def test_a_sleeping_hint_says_how_the_box_sleeps_and_older_ones_still_read() -> None:
    off = Hint("sleeping", action="poweroff")
    assert encode(off) == b"sleepyllama-hint 1 sleeping poweroff\n"
    assert decode(encode(off)) == off
    assert decode(b"sleepyllama-hint 1 sleeping\n") == Hint("sleeping")  # an older box: not said
    assert decode(b"sleepyllama-hint 1 sleeping suspend-then-hibernate\n") == Hint(
        "sleeping", action="suspend-then-hibernate")


def test_a_sleeping_hint_says_what_the_sleep_saves_and_an_older_proxy_reads_its_action() -> None:
    """The box knows what it draws awake; the always-on host shows the kWh its sleeps save."""
    saving = Hint("sleeping", action="suspend", saving_watts=183)
    assert encode(saving) == b"sleepyllama-hint 1 sleeping suspend:183\n"
    assert decode(encode(saving)) == saving
    # an older proxy's pattern takes the word whole, and an unknown action reads as suspend
    assert hints._HINT.fullmatch(encode(saving).decode()) is not None
    assert encode(Hint("sleeping", saving_watts=5)) == b"sleepyllama-hint 1 sleeping suspend:5\n"
    for word in (b"suspend:-3", b"suspend:1e9", b"suspend:nan", b"suspend:999999"):
        assert decode(b"sleepyllama-hint 1 sleeping " + word + b"\n") == Hint(
            "sleeping", action="suspend"), word


def test_a_box_that_powers_off_is_waited_for_as_one_that_boots(tmp_path, cleanup) -> None:
    """The "sleeping" hint says how the box sleeps; a proxy started afresh (exit_idle, a
    restart) still knows it, says "booting" in the wake's progress and learns the wake apart."""
    from openai import OpenAI

    from sleepyllama import ledger

    backend = SleepingBackend(tmp_path, load_seconds=1.0, tokens=2)
    cleanup.append(backend)
    state = tmp_path / "state"
    state.mkdir()
    table = proxy_table(backend, wol_interval="0.5s", wake_progress=True)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir(), second_dir.mkdir()
    first = ProxyRun(first_dir, table, activate=False, state_directory=state)
    cleanup.append(first)
    get = b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    assert http_request(first.address, get).startswith(b"HTTP/1.1 200")
    backend.kill_server()
    udp_to(first.address, encode(Hint("sleeping", action="poweroff")))
    wait_for(lambda: "going to sleep (poweroff)" in first.log(), what="the hint taken")
    first.stop()

    again = ProxyRun(second_dir, table, state_directory=state)
    cleanup.append(again)
    host, port = again.address
    stream = OpenAI(base_url=f"http://{host}:{port}/v1", api_key="none", max_retries=0,
                    timeout=60).chat.completions.create(
        model="qwen", stream=True, messages=[{"role": "user", "content": "hi"}])
    said = "".join((chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                   for chunk in stream)
    assert "waking the GPU box 127.0.0.1 (booting: about 2m)" in said, said
    wakes = [entry for entry in ledger.read(state / "llama.ledger.jsonl")
             if isinstance(entry, ledger.Wake) and entry.ready_after is not None]
    assert wakes[-1].woke_from == "poweroff", wakes


def test_a_ready_hint_names_its_port_and_another_backends_proxy_ignores_it() -> None:
    """The Ollama server's "ready" went to the llama proxy, which probed for nothing."""
    import asyncio

    from sleepyllama import config
    from sleepyllama.proxy.backend import Backend

    ready = Hint("ready", "ollama", port=11434)
    assert encode(ready) == b"sleepyllama-hint 1 ready ollama:11434\n"
    assert decode(encode(ready)) == ready
    assert decode(b"sleepyllama-hint 1 ready llama\n") == Hint("ready", "llama")  # an older box
    assert decode(b"sleepyllama-hint 1 ready llama:99999\n") == Hint("ready", "llama:99999")
    proxy = config.parse('[proxy.llama]\nbackend = "127.0.0.1:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                         'answer_while_asleep = []\n').proxy("llama")
    probes: list[int] = []

    def probe() -> tuple[bool, str]:
        probes.append(1)
        return False, "Connection refused"

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        backend = Backend(proxy, loop, NoSignal(), probe=probe)
        backend.wake.hinted(ready, "box")  # another server's: nothing to do here
        await asyncio.sleep(0.3)
        ignored = len(probes)
        backend.wake.hinted(Hint("ready", "llama", port=8080), "box")  # its own: one look
        deadline = loop.time() + 10
        while not probes and loop.time() < deadline:
            await asyncio.sleep(0.01)
        backend.close_all()
        return ignored

    assert asyncio.run(scenario()) == 0 and probes


class NoSignal:
    def send(self) -> bool:
        return True

    def describe(self) -> str:
        return "nothing"

    def close(self) -> None:
        pass


def non_loopback_address() -> str | None:
    """An address of this host that is not loopback (its LAN side), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed by the default route, never sent
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_a_wake_request_is_taken_from_this_host_s_page_only(tmp_path, cleanup) -> None:
    """The page's Wake button reaches the proxy as a datagram: one from another address must
    not start a wake (it would bypass wake_from, which the page checks)."""
    lan = non_loopback_address()
    if lan is None:
        pytest.skip("this machine has no address but loopback to send from")
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    port = free_port()
    proxy = ProxyRun(tmp_path, proxy_table(backend, answer_while_asleep=[]), activate=False,
                     listen=f"0.0.0.0:{port}")
    cleanup.append(proxy)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((lan, 0))
        sock.sendto(encode(Hint("wake", "10.9.9.9")), ("127.0.0.1", port))
    wait_for(lambda: "a wake request from afar" in proxy.log(), what="the request ignored")
    udp_to(("127.0.0.1", port), encode(Hint("wake", "10.9.9.9")))  # the page's, on loopback
    wait_for(lambda: backend.packets(), what="a magic packet for the page's request")
    assert "the page for 10.9.9.9 asked" in proxy.log()


def test_each_sender_has_its_own_limit_and_all_together_one_more() -> None:
    limits = SenderLimits(overall_per_second=10.0, overall_burst=20)
    assert [limits.allow("10.0.0.66", 0.0) for _ in range(50)].count(True) == 3
    assert limits.allow("192.168.1.50", 0.0)  # the box's own hint, after another's flood
    # spoofed senders, each new: together no more than the overall burst
    assert [limits.allow(f"10.1.{n // 250}.{n % 250}", 0.1) for n in range(1000)].count(True) <= 20


def test_a_flood_of_hints_drops_no_wake_of_this_host_s_page(tmp_path, cleanup) -> None:
    """Found by trying it: one limit for every sender and event, and at 20 spoofed hints a
    second the page's Wake answered "asked" while no packet went out."""
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    port = free_port()
    proxy = ProxyRun(tmp_path, proxy_table(backend, answer_while_asleep=[]), activate=False,
                     listen=f"127.0.0.1:{port}")
    cleanup.append(proxy)
    for _ in range(100):
        udp_to(("127.0.0.1", port), encode(Hint("sleeping")))
    udp_to(("127.0.0.1", port), encode(Hint("wake", "192.168.1.7")))  # the page's, after them
    wait_for(lambda: backend.packets(), what="a magic packet for the page's request")
    wait_for(lambda: "ignored" in proxy.log() and "too many hints" in proxy.log(),
             what="the dropped hints said")


def test_a_box_that_says_ready_after_sleeping_ends_the_sleep(tmp_path, cleanup) -> None:
    """A refused hibernate: the box said "sleeping", stayed up and said "ready"; the proxy's
    ledger ends the sleep there, so the page counts no saving from then on."""
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    state = tmp_path / "state"
    state.mkdir()
    proxy = ProxyRun(tmp_path, proxy_table(backend), activate=False, state_directory=state)
    cleanup.append(proxy)
    wait_for(lambda: "serving llama" in proxy.log(), what="the proxy")
    wake_directly(backend)
    udp_to(proxy.address, encode(Hint("sleeping", action="hibernate", saving_watts=200)))
    wait_for(lambda: "the box is going to sleep" in proxy.log(), what="the sleeping hint")
    udp_to(proxy.address, encode(Hint("ready", "llama")))
    events = lambda: [entry.event for entry in ledger.read(state / "llama.ledger.jsonl")]  # noqa: E731
    wait_for(lambda: events()[-1:] == ["box-up"], what="the sleep ended in the ledger")
    assert events() == ["box-sleeping", "box-up"]


def test_a_sleeping_hint_is_checked_a_while_later(monkeypatch) -> None:
    """A "sleeping" hint that was not the box's (or a sleep logind refused, on a box that
    does not say "ready" again): the proxy looks once a while later, and a box that answers
    ends the sleep. In one process, on a clock of the test's choosing."""
    import asyncio

    from sleepyllama import config
    from sleepyllama.proxy import belief as beliefs
    from sleepyllama.proxy.cache import AnswerCache
    from sleepyllama.proxy.prober import Prober
    from sleepyllama.proxy.wake_record import WakeRecord

    monkeypatch.setattr(beliefs, "SLEEP_CHECKED_AFTER", 0.05)
    proxy = config.parse('[proxy.llama]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:45"\n'
                         ).proxy("llama")
    recorded: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        record = WakeRecord(sleep_open=True)
        looked = asyncio.Event()

        def probe() -> tuple[bool, str]:
            loop.call_soon_threadsafe(looked.set)
            return True, "HTTP 200"

        context = WakeContext.built(proxy, loop, record,
                                    to_ledger=lambda entry: recorded.append(entry.event))
        belief = beliefs.Belief(context, AnswerCache("http://127.0.0.1:9", (), None),
                                Prober(loop), probe=probe, quick_probe=probe)
        belief.going_to_sleep()
        await asyncio.wait_for(looked.wait(), 30)
        while not recorded:
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert recorded == ["box-up"]
