"""While the backend sleeps: the proxy under systemd-socket-activate reads requests, answers the
model list from its cache without waking anything, refuses what may not wake the box, and hands
the rest to the wake path with every byte it read, in order."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sleepyllama import ledger

from conftest import (
    GET_HEALTH,
    MAC,
    ProxyRun,
    SleepingBackend,
    chat_request,
    http_request,
    proxy_table,
    require,
    wait_for,
)

GET_MODELS = b"GET /v1/models HTTP/1.1\r\nHost: box\r\n\r\n"


@pytest.fixture(autouse=True)
def socket_activate() -> None:
    require("systemd-socket-activate")


class Asleep:
    """A backend that served once through the proxy (so the proxy kept its model list), then
    fell asleep (unless awake=True); and a proxy started afresh on the same state directory (as
    after exit_idle, a restart or a reboot of the always-on host) that knows nothing of it but
    its cache."""

    def __init__(self, tmp_path: Path, cleanup: list, kind: str = "llama-server",
                 awake: bool = False, **keys: object) -> None:
        self.backend = SleepingBackend(tmp_path, load_seconds=0.2, kind=kind)
        cleanup.append(self.backend)
        state = tmp_path / "state"
        state.mkdir()
        first_dir, second_dir = tmp_path / "first", tmp_path / "second"
        first_dir.mkdir(), second_dir.mkdir()
        first = ProxyRun(first_dir, proxy_table(self.backend, wol_interval="0.5s"),
                         state_directory=state)
        try:
            assert http_request(first.address, GET_HEALTH).startswith(
                b"HTTP/1.1 404" if kind == "ollama" else b"HTTP/1.1 200")  # Ollama has no /health
            wait_for(lambda: (state / "llama.answers.json").exists(), what="the cache on disk")
        finally:
            first.stop()
        if not awake:
            self.backend.kill_server()
        self.packets_asleep = len(self.backend.packets())
        keys.setdefault("wol_interval", "0.5s")
        self.proxy = ProxyRun(second_dir, proxy_table(self.backend, **keys), state_directory=state)
        cleanup.append(self.proxy)

    def new_packets(self) -> int:
        return len(self.backend.packets()) - self.packets_asleep


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_the_official_client_lists_models_asleep_and_its_chat_wakes_the_box(tmp_path, cleanup) -> None:
    from openai import OpenAI

    asleep = Asleep(tmp_path, cleanup)
    host, port = asleep.proxy.address
    client = OpenAI(base_url=f"http://{host}:{port}/v1", api_key="none", max_retries=0)
    assert [model.id for model in client.models.list().data] == ["tiny"]
    assert asleep.new_packets() == 0, "listing the models woke the box"
    wait_for(lambda: "answered GET /v1/models from the cache" in asleep.proxy.log(),
             what="the journal line")  # written just after the answer went out
    # the same client, on the same kept-alive connection: this one needs the model
    stream = client.chat.completions.create(model="tiny", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert "token0" in text
    assert asleep.new_packets() >= 1
    assert "first 127.0.0.1" in asleep.proxy.log() and "POST /v1/chat/completions" in asleep.proxy.log()
    # who woke it, by its User-Agent: LiteLLM's health checks are chats, but for this
    assert "(User-Agent: OpenAI/Python " in asleep.proxy.log()
    assert any("1 answered from cache" in s for s in asleep.proxy.notify.statuses())
    recorded = ledger.read(tmp_path / "state" / "llama.ledger.jsonl")
    assert any(e.event == "answered-asleep" and e.request == "GET /v1/models" for e in recorded)
    wake = [e for e in recorded if e.event == "wake"][-1]
    assert wake.request == "POST /v1/chat/completions" and wake.signals >= 1
    assert wake.agent.startswith("OpenAI/Python ")
    # the fake loads for 0.2 s once its "box" is up: up first, ready after
    assert 0 <= wake.up_after <= wake.ready_after
    # and then the request's own work, until the backend's first bytes to its first client
    answered = [e for e in recorded if e.event == "first-answer" and e.at >= wake.at]
    assert len(answered) == 1 and answered[0].after_ready >= 0, recorded
    assert "the backend's first answer to POST /v1/chat/completions came" in asleep.proxy.log()
    assert wake.ready_after > 0


def test_keep_alive_and_pipelining_keep_every_request_in_order(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup)
    # Connection: close is honoured, and nothing is woken by looking
    closing = http_request(asleep.proxy.address, GET_MODELS.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert closing.startswith(b"HTTP/1.1 200") and b"connection: close" in closing.lower()
    assert b"x-sleepyllama: from-cache" in closing.lower()
    assert asleep.new_packets() == 0
    # cached, cached, then one for the backend, pipelined in one write: all three come back,
    # in order, the last once the backend woke
    sent = GET_MODELS + GET_MODELS + chat_request(stream=False)
    answer = http_request(asleep.proxy.address, sent)
    heads = [part.split(b"\r\n", 1)[0] for part in answer.split(b"HTTP/1.1 ")[1:]]
    assert heads == [b"200 OK", b"200 OK", b"200 OK"], answer[:600]
    assert answer.lower().count(b"x-sleepyllama: from-cache") == 2
    assert answer.lower().index(b"x-sleepyllama") < answer.index(b"chat.completion")
    assert asleep.new_packets() >= 1


def test_a_request_split_at_every_byte_is_read_the_same(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup)
    two = GET_MODELS + GET_MODELS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")

    def split_at(cut: int) -> bytes:
        with socket.create_connection(asleep.proxy.address, timeout=10) as sock:
            sock.sendall(two[:cut])
            time.sleep(0.01)
            sock.sendall(two[cut:])
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(split_at, range(1, len(two))))
    for cut, answer in enumerate(answers, 1):
        assert answer.count(b"HTTP/1.1 200 OK") == 2, (cut, answer[:300])
    assert asleep.new_packets() == 0


def test_wake_on_and_wake_from_refuse_at_once_without_waking(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup, wake_on=["POST /v1/*"])
    refused = http_request(asleep.proxy.address, GET_HEALTH)
    assert status(refused) == 503 and b"Retry-After: 30" in refused
    body = json.loads(refused.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "backend_asleep" and "(wake_on)" in body["error"]["message"]
    assert "GET /health may not wake the backend (wake_on)" in asleep.proxy.log()
    assert asleep.new_packets() == 0
    assert status(http_request(asleep.proxy.address, chat_request(stream=False))) == 200


def test_wake_from_keeps_other_clients_from_waking_the_box(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup, wake_from=["10.0.0.0/8"])
    refused = http_request(asleep.proxy.address, chat_request(stream=False))
    assert status(refused) == 503 and b"(wake_from)" in refused
    with socket.create_connection(asleep.proxy.address, timeout=10) as raw:  # not HTTP
        raw.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        assert raw.recv(100) == b""
    # Connection: close, so the read to EOF does not race the proxy's keep-alive idle timeout
    looking = GET_MODELS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    assert status(http_request(asleep.proxy.address, looking)) == 200  # looking is for all
    assert asleep.new_packets() == 0


def test_a_client_that_does_not_speak_http_is_held_and_woken_as_before(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup)
    with socket.create_connection(asleep.proxy.address, timeout=30) as raw:
        # bytes that are not HTTP/1.x reach the backend as they were sent, once it is up
        raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        wait_for(lambda: asleep.new_packets() >= 1, what="a wake for the HTTP/2 client")
        answer = raw.recv(65536)
    assert b"505" in answer  # the fake got the HTTP/2 preface as sent, and speaks no HTTP/2
    assert "holding" in asleep.proxy.log()


def test_bad_input_gets_a_clear_answer_and_leaks_nothing(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup)
    http_request(asleep.proxy.address, GET_MODELS.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    time.sleep(0.5)
    fds = asleep.proxy.fd_count()
    huge_head = b"GET /v1/models HTTP/1.1\r\nHost: box\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n"
    body_to_cached = (b"GET /v1/models HTTP/1.1\r\nHost: box\r\nContent-Length: 100000000\r\n\r\n"
                      + b"x" * 65536)
    garbage = b"GET /v1/models HTTP/1.1\r\nthis is no header\r\n\r\n"
    cases = [(huge_head, 431), (body_to_cached, 400), (garbage, 400)] * 100

    def send(case: tuple[bytes, int]) -> int:
        try:
            return status(http_request(asleep.proxy.address, case[0], timeout=20))
        except (ConnectionResetError, BrokenPipeError):
            return -1  # closed while we still wrote: a close is an answer too

    with ThreadPoolExecutor(64) as pool:
        got = list(pool.map(send, cases))
    for (_request, wanted), answer in zip(cases, got, strict=True):
        assert answer in (wanted, -1)
    assert got.count(-1) < len(got) // 10
    # a head that trickles in: answered 408 once HEAD_TIMEOUT passes
    with socket.create_connection(asleep.proxy.address, timeout=30) as slow:
        slow.sendall(b"GET /v1/models HTTP/1.1\r\nHost: b")
        assert slow.recv(65536).startswith(b"HTTP/1.1 408")
    wait_for(lambda: asleep.proxy.fd_count() == fds, timeout=10, what="every fd closed")
    assert asleep.new_packets() == 0
    assert status(http_request(asleep.proxy.address, GET_MODELS.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))) == 200  # and it still serves


def test_with_wake_on_only_a_request_it_names_wakes_the_box(tmp_path, cleanup) -> None:
    """README promises that wake_on keeps scanners from waking the box: bytes that are not an
    HTTP/1.x request it names are refused, whatever they are."""
    asleep = Asleep(tmp_path, cleanup, wake_on=["POST /v1/*"])
    scanners = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32),  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2's preface
        bytes(range(256)),  # random bytes
        b"get /v1/models HTTP/1.1\r\nHost: box\r\n\r\n",  # a lowercase method
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ]
    for scan in scanners:
        with socket.create_connection(asleep.proxy.address, timeout=30) as sock:
            sock.sendall(scan)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer == b"" or status(answer) in (400, 503), (scan[:20], answer[:200])
    # one that says nothing at all is closed once the head timeout passes
    with socket.create_connection(asleep.proxy.address, timeout=30) as silent:
        assert silent.recv(100) == b""
    assert asleep.new_packets() == 0, asleep.proxy.log()[-2000:]
    assert status(http_request(asleep.proxy.address, chat_request(stream=False))) == 200


def test_an_awake_backend_answers_the_model_list_itself(tmp_path, cleanup) -> None:
    """The proxy's readiness is only stale (a fresh proxy, or 5 s after its last probe) while the
    box runs: one quick probe, and the backend answers; the cache, and "asleep", only when it
    does not."""
    awake = Asleep(tmp_path, cleanup, awake=True)
    for _ in range(2):
        answer = http_request(awake.proxy.address, GET_MODELS.replace(
            b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        assert status(answer) == 200 and b"x-sleepyllama" not in answer.lower(), answer[:400]
        time.sleep(5.5)  # past the 5 s a ready verdict is trusted
    assert "answered GET /v1/models from the cache" not in awake.proxy.log()
    assert "backend asleep" not in awake.proxy.log()
    assert awake.new_packets() == 0
    awake.backend.kill_server()
    answer = http_request(awake.proxy.address, GET_MODELS.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert b"x-sleepyllama: from-cache; backend-asleep" in answer.lower(), answer[:400]


def test_a_new_proxy_keeps_the_answers_of_an_awake_backend_at_once(tmp_path, cleanup) -> None:
    """A newcomer's first page load while the box sleeps must not wake it for the model list:
    the proxy's first start, with the box awake (as install.sh leaves it), fetches the answers."""
    backend = SleepingBackend(tmp_path, load_seconds=0.0)
    cleanup.append(backend)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:  # the box is up
        udp.sendto(b"\xff" * 6 + bytes.fromhex(MAC.replace(":", "")) * 16,
                   ("127.0.0.1", backend.wol_port))
    wait_for(backend.ready_file.exists, what="the backend up")
    state = tmp_path / "state"
    state.mkdir()
    proxy = ProxyRun(tmp_path, proxy_table(backend), activate=False, state_directory=state)
    cleanup.append(proxy)
    wait_for(lambda: (state / "llama.answers.json").exists(), what="the answers kept at start")
    assert "/v1/models" in (state / "llama.answers.json").read_text()
    assert len(backend.packets()) == 1  # ours, above: the proxy sent none


def test_prewake_answers_the_look_at_once_and_wakes_the_box_meanwhile(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup, prewake_on=["GET /v1/models"])
    answer = http_request(asleep.proxy.address, GET_MODELS.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert b"x-sleepyllama: from-cache" in answer.lower()  # answered, not held for the wake
    wait_for(lambda: asleep.new_packets() >= 1, what="a magic packet for the pre-wake")
    assert "pre-wake of 127.0.0.1:" in asleep.proxy.log()
    wait_for(lambda: "ready after" in asleep.proxy.log(), what="the box up before any chat")
    wake = [e for e in ledger.read(tmp_path / "state" / "llama.ledger.jsonl")
            if e.event == "wake"][-1]
    assert wake.request == "GET /v1/models (pre-wake)" and wake.ready_after > 0
    # a look that is not named, and a client not allowed to wake it, do not pre-wake
    assert status(http_request(asleep.proxy.address, chat_request(stream=False))) == 200


def test_prewake_respects_wake_from(tmp_path, cleanup) -> None:
    asleep = Asleep(tmp_path, cleanup, prewake_on=["GET /v1/models"], wake_from=["10.0.0.0/8"])
    answer = http_request(asleep.proxy.address, GET_MODELS.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert status(answer) == 200
    # a pre-wake is decided, and logged, before the answer goes out
    wait_for(lambda: "answered GET /v1/models from the cache" in asleep.proxy.log(),
             what="the journal line of the answer")
    assert "pre-wake" not in asleep.proxy.log()
    assert asleep.new_packets() == 0


def test_a_query_string_is_answered_by_its_path_and_never_logged_or_recorded(tmp_path,
                                                                            cleanup) -> None:
    """Found by an adversarial trial (issue 20): GET /v1/models?api_key=KEY woke the box (the
    query made it no look-only request) and wrote the key into the journal and the ledger."""
    asleep = Asleep(tmp_path, cleanup)
    secret = "sk-do-not-log-4242"
    answer = http_request(asleep.proxy.address, f"GET /v1/models?api_key={secret} HTTP/1.1\r\n"
                          "Host: p\r\nConnection: close\r\n\r\n".encode())
    assert status(answer) == 200 and b"from-cache" in answer
    assert asleep.new_packets() == 0, "a query string woke the box"
    chat = (f"POST /v1/chat/completions?key={secret} HTTP/1.1\r\nHost: p\r\nContent-Length: 2"
            "\r\nConnection: close\r\n\r\n{}").encode()
    assert status(http_request(asleep.proxy.address, chat)) == 200
    wait_for(lambda: "ready after" in asleep.proxy.log(), what="the wake's line")
    assert "GET /v1/models" in asleep.proxy.log() and "POST /v1/chat/completions" in asleep.proxy.log()
    assert secret not in asleep.proxy.log()
    assert secret not in (tmp_path / "state" / "llama.ledger.jsonl").read_text()
