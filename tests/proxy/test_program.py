"""The proxy as users run it: under the real systemd-socket-activate, in front of a fake
llama-server that only starts when a magic packet for its MAC arrives."""

from __future__ import annotations

import itertools
import json
import math
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sleepyllama.proxy.readiness import READY_TRUST

from conftest import (
    FAKE_SERVER,
    GET_HEALTH,
    Process,
    ProxyRun,
    SleepingBackend,
    chat_request,
    free_port,
    http_request,
    proxy_table,
    udp_to,
    wait_for,
)


def start(tmp_path: Path, cleanup: list, *, load_seconds: float = 1.0, token_delay: float = 0.0,
          tokens: int = 5, **keys: object) -> tuple[SleepingBackend, ProxyRun]:
    backend = SleepingBackend(tmp_path, load_seconds=load_seconds, tokens=tokens,
                              token_delay=token_delay)
    cleanup.append(backend)
    keys.setdefault("wol_interval", "0.5s")
    proxy = ProxyRun(tmp_path, proxy_table(backend, **keys))
    cleanup.append(proxy)
    return backend, proxy


def status_code(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_held_request_is_served_once_the_backend_is_ready_never_503(tmp_path, cleanup) -> None:
    backend, proxy = start(tmp_path, cleanup, load_seconds=1.5)
    response = http_request(proxy.address, chat_request(stream=False))
    assert status_code(response) == 200, response[:200]
    assert b"token0" in response
    assert backend.packets(), "no magic packet reached the sleeping backend"
    # the request went through the loading phase (503 on /health) without seeing it
    assert backend.ready_at() > backend.packets()[0] + 1.0
    assert "ready after" in proxy.log()
    statuses = proxy.notify.statuses()
    assert any(s.startswith("waking 127.0.0.1 · ") and "1 client waiting" in s for s in statuses), statuses
    wait_for(lambda: "backend awake · " in " ".join(proxy.notify.statuses()), what="awake status")
    assert any("READY=1" in message for message in proxy.notify.messages)


def test_streamed_tokens_arrive_as_they_are_produced(tmp_path, cleanup) -> None:
    _backend, proxy = start(tmp_path, cleanup, load_seconds=0.2, tokens=5, token_delay=0.3)
    arrivals: list[tuple[float, float]] = []  # (produced, arrived) per token
    with socket.create_connection(proxy.address, timeout=30) as sock:
        sock.sendall(chat_request(stream=True))
        buffer = b""
        while chunk := sock.recv(65536):
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                line = event[event.find(b"data: "):]
                if line.startswith(b"data: {"):
                    arrivals.append((json.loads(line[6:])["produced_at"], now))
    assert len(arrivals) == 5
    # each token reaches the client before the server has even produced the next one:
    # nothing on the way held it back to fill a buffer
    for (_produced, arrived), (next_produced, _) in itertools.pairwise(arrivals):
        assert arrived < next_produced


def test_500_clients_during_one_wake_all_served_with_few_packets(tmp_path, cleanup) -> None:
    backend, proxy = start(tmp_path, cleanup, load_seconds=2.0, wol_interval="0.5s")

    def one_client(_index: int) -> int:
        return status_code(http_request(proxy.address, GET_HEALTH, timeout=60))

    with ThreadPoolExecutor(max_workers=500) as pool:
        codes = list(pool.map(one_client, range(500)))
    assert codes == [200] * 500
    packets = backend.packets()
    wake_seconds = backend.ready_at() - packets[0]
    time.sleep(1.5)  # no more packets once nobody waits
    assert len(backend.packets()) == len(packets)
    assert len(packets) <= math.ceil(wake_seconds / 0.5) + 1, (len(packets), wake_seconds)


def test_backend_that_never_wakes_gets_http_503_after_wake_timeout(tmp_path, cleanup) -> None:
    port = free_port()  # nothing will ever listen here
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=free_port(
        socket.SOCK_DGRAM), wake_timeout="1s", wol_interval="0.5s"))
    cleanup.append(proxy)
    started = time.monotonic()
    response = http_request(proxy.address, chat_request(stream=False))
    waited = time.monotonic() - started
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: " in head
    error = json.loads(body)["error"]
    assert error["type"] == "backend_unavailable"
    assert f"127.0.0.1:{port}" in error["message"] and "within 1s" in error["message"]
    # refused: the box is up, its port is wrong; the client and the journal are told so
    assert f"nothing listens on port {port}" in error["message"]
    assert f"nothing listens on port {port}" in proxy.log()
    assert waited >= 1.0
    assert "did not wake within 1s" in proxy.log()
    wait_for(lambda: "backend did not wake within 1s" in proxy.notify.statuses(), what="status")
    # a client that does not speak HTTP is simply closed
    with socket.create_connection(proxy.address, timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01 not http")
        assert sock.recv(100) == b""


def test_clients_that_hang_up_while_held_leave_no_fd_behind(tmp_path, cleanup) -> None:
    port = free_port()
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=free_port(
        socket.SOCK_DGRAM), wake_timeout="60s"))
    cleanup.append(proxy)
    first = socket.create_connection(proxy.address)  # starts the proxy; stays held
    first.sendall(GET_HEALTH)
    wait_for(lambda: "holding" in proxy.log(), what="the first client to be held")
    # the readiness probe opens a socket now and then: take the lowest of several counts
    baseline = min(proxy.fd_count() for _ in range(20) if not time.sleep(0.02))
    clients = [socket.create_connection(proxy.address) for _ in range(50)]
    for client in clients:
        client.sendall(GET_HEALTH)
    wait_for(lambda: proxy.fd_count() >= baseline + 50, what="50 held clients")
    for client in clients:
        client.close()
    wait_for(lambda: proxy.fd_count() <= baseline, what="fds of hung-up clients to close")
    first.close()


def test_a_lost_backend_sends_the_next_client_through_the_wake_path(tmp_path, cleanup) -> None:
    backend, proxy = start(tmp_path, cleanup, load_seconds=0.3)
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    packets = len(backend.packets())
    backend.kill_server()
    time.sleep(0.6)  # past wol_interval, so the rate limit does not hide the new wake
    assert status_code(http_request(proxy.address, chat_request(stream=False))) == 200
    assert len(backend.packets()) > packets, "the proxy did not wake the backend again"
    assert "does not answer" in proxy.log()
    assert proxy.log().count("ready after") == 2
    # the connect had just failed: the first packet went out before any probe had answered
    second_wake = [line for line in proxy.log().splitlines() if "waking" in line][-1]
    assert second_wake.endswith("(last probe: none yet)"), second_wake


def test_a_server_that_came_back_by_itself_is_not_trusted_while_loading(tmp_path, cleanup) -> None:
    """The box woken by someone else, or llama-server restarted: it accepts connections while
    it loads, and a stale "ready" must not send a client into its 503 "Loading model"."""
    backend, proxy = start(tmp_path, cleanup, load_seconds=0.2)
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    backend.kill_server()
    restarted = Process([sys.executable, str(FAKE_SERVER), "--port", str(backend.port),
                         "--load-seconds", str(READY_TRUST + 2.0)], tmp_path / "restarted.log")
    cleanup.append(restarted)
    # until the proxy no longer trusts its last look at /health (READY_TRUST), as it says
    wait_for(lambda: any(s.startswith("backend answered") for s in proxy.notify.statuses()),
             timeout=READY_TRUST + 5, what="the proxy to stop trusting its last look")
    response = http_request(proxy.address, chat_request(stream=False))
    assert status_code(response) == 200, response[:300]


def test_max_connections_closes_new_clients_with_a_warning(tmp_path, cleanup) -> None:
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{free_port()}",
                                           wol_port=free_port(socket.SOCK_DGRAM),
                                           max_connections=3))
    cleanup.append(proxy)
    held = [socket.create_connection(proxy.address) for _ in range(3)]
    for client in held:
        client.sendall(GET_HEALTH)
    wait_for(lambda: proxy.log().count("holding") == 3, what="three held clients")
    with socket.create_connection(proxy.address, timeout=10) as extra:
        assert extra.recv(100) == b""
    wait_for(lambda: "max_connections (3) reached" in proxy.log(), what="the warning")
    for client in held:
        client.close()


def test_max_connections_is_held_to_what_the_open_file_limit_allows(tmp_path, cleanup) -> None:
    """max_connections was not checked against the proxy's open-file limit: past it a
    connection failed with "Too many open files" in the middle of its splice."""
    from sleepyllama.proxy.program import FDS_BESIDES, FDS_PER_CONNECTION, connections_within

    assert connections_within(512, 65536) == 512
    assert connections_within(512, 1024) == (1024 - FDS_BESIDES) // FDS_PER_CONNECTION
    limit = FDS_BESIDES + 3 * FDS_PER_CONNECTION  # room for three
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{free_port()}",
                                           wol_port=free_port(socket.SOCK_DGRAM)),
                     wrapper=["prlimit", f"--nofile={limit}:{limit}"])
    cleanup.append(proxy)
    held = [socket.create_connection(proxy.address) for _ in range(3)]  # (it starts on the first)
    for client in held:
        client.sendall(GET_HEALTH)
    wait_for(lambda: proxy.log().count("holding") == 3, what="three held clients")
    assert "it takes 3 connections at once" in proxy.log() and "LimitNOFILE=" in proxy.log()
    with socket.create_connection(proxy.address, timeout=10) as extra:
        assert extra.recv(100) == b""  # closed at once, cleanly
    wait_for(lambda: "max_connections (3) reached" in proxy.log(), what="the refusal said")
    for client in held:
        client.close()


def test_status_after_serving_says_when_the_backend_last_answered(tmp_path, cleanup) -> None:
    _backend, proxy = start(tmp_path, cleanup, load_seconds=0.0)
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    # once "ready" is no longer trusted (READY_TRUST), STATUS must not say "not contacted yet"
    wait_for(lambda: any(s.startswith("backend answered") for s in proxy.notify.statuses()),
             timeout=READY_TRUST + 5, what="the status after READY_TRUST")
    statuses = proxy.notify.statuses()
    first_answer = next(i for i, s in enumerate(statuses) if s.startswith("backend awake"))
    assert not any("not contacted" in s for s in statuses[first_answer:]), statuses


def test_exit_idle_under_socket_activation(tmp_path, cleanup) -> None:
    _backend, proxy = start(tmp_path, cleanup, load_seconds=0.0, exit_idle="1s")
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    assert proxy.process.popen.wait(10) == 0
    assert "no connection for 1s: exiting" in proxy.log()


def test_ipv6_on_both_sides_and_wake_command(tmp_path, cleanup) -> None:
    if not socket.has_ipv6:
        pytest.skip("this kernel has no IPv6")
    port = free_port()
    marker = tmp_path / "woken"
    server = [sys.executable, str(FAKE_SERVER), "--host", "::1", "--port", str(port),
              "--load-seconds", "0.5"]
    # the wake command starts the server and returns: a smart plug, IPMI, an HTTP call
    wake = [sys.executable, "-c", f"import subprocess, pathlib; pathlib.Path({str(marker)!r}).touch(); "
            f"subprocess.Popen({server!r}, start_new_session=True)"]
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"[::1]:{port}", wake_command=wake,
                                           wol_interval="5s"),
                     listen=f"[::1]:{free_port()}")
    cleanup.append(proxy)
    try:
        assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
        assert marker.exists()
        assert f"waking [::1]:{port} with wake_command" in proxy.log()
    finally:
        subprocess.run(["pkill", "-f", "--", f"--host ::1 --port {port} "], check=False)


def test_a_box_that_does_not_wake_is_reported_once_not_three_times(tmp_path, cleanup) -> None:
    """The openai client retries a 503 twice: a box that never woke cost its user 3 x the
    wake_timeout. After a give-up, the next clients are held only as long as a fresh attempt
    needs (a sixth of wake_timeout, at least 5 s), and told of the attempt before."""
    from openai import APIStatusError, OpenAI

    port = free_port()
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{port}", wol_port=free_port(
        socket.SOCK_DGRAM), wake_timeout="12s", wol_interval="0.5s"))
    cleanup.append(proxy)
    host, proxy_port = proxy.address
    client = OpenAI(base_url=f"http://{host}:{proxy_port}/v1", api_key="none", max_retries=0,
                    timeout=60)

    def ask() -> tuple[float, str]:
        started = time.monotonic()
        with pytest.raises(APIStatusError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 503
        return time.monotonic() - started, str(caught.value)

    first_wait, first = ask()
    second_wait, second = ask()
    assert first_wait >= 12 and "within 12s" in first and "either" not in first
    assert second_wait >= 5, second_wait
    assert "within 5s" in second and "did not wake within 12s at the attempt" in second, second


def test_retry_after_is_what_a_wake_takes_here(tmp_path, cleanup) -> None:
    """The give-up 503 said 'try again in 30 seconds' whatever the box takes; it says what
    the last wakes took (their median), learned from the proxy's own ledger."""
    state = tmp_path / "state"
    state.mkdir()
    with (state / "llama.ledger.jsonl").open("w") as ledger_file:
        for seconds in (11.2, 12.4, 40.0):
            ledger_file.write(json.dumps({"at": 1795600000.0, "mono": 1.0, "boot": "b",
                                          "event": "wake", "ready_after": seconds}) + "\n")
    proxy = ProxyRun(tmp_path, proxy_table(None, backend=f"127.0.0.1:{free_port()}",
                                           wol_port=free_port(socket.SOCK_DGRAM),
                                           wake_timeout="1s", wol_interval="0.5s"),
                     state_directory=state)
    cleanup.append(proxy)
    head = http_request(proxy.address, chat_request(stream=False)).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nRetry-After: 13\r\n" in head, head


def test_a_reload_keeps_held_clients_and_streams_and_refuses_a_broken_config(tmp_path,
                                                                          cleanup) -> None:
    """sleepyllama restart after any config edit restarted the proxy: every held client got a
    bare EOF and every stream was cut. SIGHUP (systemctl reload) reads the config anew for new
    clients; those held or spliced finish as they were."""
    import signal

    backend = SleepingBackend(tmp_path, load_seconds=1.0, tokens=6, token_delay=0.3)
    cleanup.append(backend)
    table = proxy_table(backend, wol_interval="0.5s")
    proxy = ProxyRun(tmp_path, table, activate=False)
    cleanup.append(proxy)
    with socket.create_connection(proxy.address, timeout=60) as held:
        held.sendall(chat_request(stream=True))
        wait_for(lambda: backend.packets(), what="the wake under way")
        proxy.config.write_text(table + 'answer_while_asleep = []\n')  # an edit
        proxy.process.popen.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded: new clients go to" in proxy.log(), what="the reload")
        response = b""
        while chunk := held.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200") and b"token5" in response and b"[DONE]" in response
    # a stream under way when the config is read again runs to its end
    with socket.create_connection(proxy.address, timeout=60) as streaming:
        streaming.sendall(chat_request(stream=True))
        first = streaming.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        proxy.process.popen.send_signal(signal.SIGHUP)  # nothing changed: taken as it is
        rest = b""
        while chunk := streaming.recv(65536):
            rest += chunk
    assert b"token5" in first + rest and b"[DONE]" in rest
    assert "config reloaded: nothing changed" in proxy.log()
    # a broken config is not taken: it serves on as before, and says why
    proxy.config.write_text(table.replace('mac = "', 'mac = "zz'))
    proxy.process.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: "not reloaded, serving on as before" in proxy.log(), what="the refusal")
    assert status_code(http_request(proxy.address, chat_request(stream=False))) == 200
    # its STATUS keeps saying why (issue 20: the next second's tick wiped it), while the
    # connection count it shows moves on
    wait_for(lambda: proxy.notify.statuses()[-1].startswith("config not reloaded: ")
             and "serving on: backend awake" in proxy.notify.statuses()[-1], what="the STATUS")
    # and the check the unit's ExecReload= runs first says no, so systemctl reload fails
    checked = subprocess.run([sys.executable, "-m", "sleepyllama.proxy.program", "--check",
                              "--config", str(proxy.config)], capture_output=True, text=True)
    assert checked.returncode == 78 and "mac" in checked.stderr, checked.stderr
    proxy.config.write_text(table)
    assert subprocess.run([sys.executable, "-m", "sleepyllama.proxy.program", "--check",
                           "--config", str(proxy.config)]).returncode == 0


def test_reloads_leak_no_fd(tmp_path, cleanup) -> None:
    """Found by an adversarial trial (issue 20): each reload with a changed config left the
    retired backend's hang-up epoll (and its wake sender) open: 200 reloads, 200 fds."""
    import os
    import signal

    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    table = proxy_table(backend, wol_interval="0.5s")
    proxy = ProxyRun(tmp_path, table, activate=False)
    cleanup.append(proxy)
    fds = Path(f"/proc/{proxy.process.popen.pid}/fd")
    before = len(list(fds.iterdir()))
    for reload in range(1, 31):
        proxy.config.write_text(table + f"wake_timeout = \"{60 + reload}s\"\n")
        proxy.process.popen.send_signal(signal.SIGHUP)
        wait_for(lambda n=reload: proxy.log().count("config reloaded: new clients go to") == n,
                 what=f"reload {reload}")
    after = len(list(fds.iterdir()))
    assert after <= before + 2, f"{after - before} fds more after 30 reloads: {os.listdir(fds)}"


def test_a_typo_in_another_proxys_table_does_not_stop_this_one(tmp_path, cleanup) -> None:
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    table = proxy_table(backend, wol_interval="0.5s")
    other = table.replace("[proxy.llama]", "[proxy.ollama]") + 'wake_timout = "3m"\n'
    proxy = ProxyRun(tmp_path, table + other, extra_args=["--instance", "llama"])
    cleanup.append(proxy)
    assert status_code(http_request(proxy.address, GET_HEALTH)) == 200
    assert "[proxy.ollama] wake_timout: unknown key" in proxy.log()
    assert "this proxy's own table is right: it serves on" in proxy.log()


def test_after_a_reload_an_awake_box_reads_awake(tmp_path, cleanup) -> None:
    """Found with a real Home Assistant: after a SIGHUP an awake box read asleep (live.json,
    Awake off) for 80 s and more, until the next client: the new config's belief knew
    nothing, and the ledger's old "sleeping" said asleep."""
    import json
    import signal

    from sleepyllama import ledger

    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    state = tmp_path / "state"
    state.mkdir()
    ledger.append(state / "llama.ledger.jsonl", ledger.BoxSleeping(action="suspend"))
    table = proxy_table(backend, wol_interval="0.5s")
    proxy = ProxyRun(tmp_path, table, activate=False, state_directory=state)
    cleanup.append(proxy)
    live = state / "llama.live.json"
    assert status_code(http_request(proxy.address, chat_request(stream=False))) == 200  # woken
    wait_for(lambda: json.loads(live.read_text())["state"] == "awake", what="awake")
    proxy.config.write_text(table + "wake_progress = true\n")  # an edit
    proxy.process.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded: new clients go to" in proxy.log(), what="the reload")
    # one event of the loop after the reload's own (which rewrote live.json): a datagram
    udp_to(proxy.address, b"after the reload")
    wait_for(lambda: "ignored a datagram from" in proxy.log(), what="the datagram read")
    assert json.loads(live.read_text())["state"] == "awake", live.read_text()
    assert proxy.notify.statuses()[-1].startswith("backend awake"), proxy.notify.statuses()
