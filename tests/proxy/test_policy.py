"""What the proxy does with a request while the backend is not ready: pure decisions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sleepyllama import config
from sleepyllama.proxy.policy import Action, Head, decide, speaks_http1


def table(extra: str = "") -> config.ProxyConfig:
    return config.parse(f'[proxy.llama]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                        f"{extra}").proxy("llama")


CACHED = frozenset({"GET /v1/models"})


def test_a_cached_model_list_is_answered_and_anything_else_wakes() -> None:
    proxy = table()
    assert decide(proxy, Head("GET", "/v1/models", False), "192.168.1.9", CACHED)[0] is (
        Action.ANSWER_FROM_CACHE)
    # not cached yet: it wakes the box as before
    assert decide(proxy, Head("GET", "/models", False), "192.168.1.9", CACHED)[0] is Action.WAKE
    assert decide(proxy, Head("POST", "/v1/chat/completions", True), "192.168.1.9", CACHED) == (
        Action.WAKE, "POST /v1/chat/completions from 192.168.1.9")
    # a body sent with a request that only looks: refused, whatever its size
    assert decide(proxy, Head("GET", "/v1/models", True), "192.168.1.9", CACHED)[0] is (
        Action.BAD_REQUEST)
    assert decide(table("answer_while_asleep = []\n"), Head("GET", "/v1/models", False),
                  "192.168.1.9", CACHED)[0] is Action.WAKE


def test_a_client_without_the_backends_key_never_gets_the_cached_model_list() -> None:
    proxy = table()
    without = Head("GET", "/v1/models", False, key_ok=False)
    assert decide(proxy, without, "192.168.1.9", CACHED)[0] is Action.UNAUTHORIZED
    # not cached: it wakes the box, whose own answer (401) it then gets
    assert decide(proxy, Head("GET", "/models", False, key_ok=False), "192.168.1.9",
                  CACHED)[0] is Action.WAKE
    assert decide(proxy, Head("POST", "/v1/chat/completions", True, key_ok=False),
                  "192.168.1.9", CACHED)[0] is Action.WAKE


def test_wake_on_and_wake_from() -> None:
    proxy = table('wake_on = ["POST /v1/*", "* /completion"]\nwake_from = ["192.168.1.0/24"]\n')
    assert decide(proxy, Head("POST", "/v1/chat/completions", True), "192.168.1.9", CACHED)[0] is (
        Action.WAKE)
    assert decide(proxy, Head("GET", "/completion", False), "192.168.1.9", CACHED)[0] is Action.WAKE
    assert decide(proxy, Head("GET", "/health", False), "192.168.1.9", CACHED) == (
        Action.REFUSE, "GET /health may not wake the backend (wake_on)")
    assert decide(proxy, Head("POST", "/v1/chat/completions", True), "10.9.9.9", CACHED) == (
        Action.REFUSE, "10.9.9.9 may not wake the backend (wake_from)")
    # IPv4 clients of a dual-stack listener, as the kernel names them
    assert decide(proxy, Head("POST", "/v1/x", True), "::ffff:192.168.1.9", CACHED)[0] is Action.WAKE
    # the cache answers everyone: looking never wakes anything
    assert decide(proxy, Head("GET", "/v1/models", False), "10.9.9.9", CACHED)[0] is (
        Action.ANSWER_FROM_CACHE)


def test_what_speaks_http1() -> None:
    assert speaks_http1(b"GET /v1/models HTTP/1.1\r\n") is True
    assert speaks_http1(b"POST http://box/v1 HTTP/1.1\r\n") is True
    assert speaks_http1(b"\x16\x03\x01\x02\x00\x01") is False  # TLS ClientHello
    assert speaks_http1(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") is False  # HTTP/2 prior knowledge
    assert speaks_http1(b"SSH-2.0-OpenSSH_9.2\r\n") is False
    assert speaks_http1(b"") is None and speaks_http1(b"GE") is None and speaks_http1(b"GET ") is None


REQUESTS = [b"GET /v1/models HTTP/1.1\r\nHost: box\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: box\r\nContent-Length: 2\r\n\r\n{}",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"]


@given(st.sampled_from(REQUESTS), st.data())
def test_every_prefix_of_a_request_is_undecided_or_decided_right(request: bytes, data) -> None:
    whole = speaks_http1(request)
    cut = data.draw(st.integers(min_value=0, max_value=len(request)))
    assert speaks_http1(request[:cut]) in (None, whole)


def test_a_request_the_backend_would_refuse_without_its_key_gets_401_at_once() -> None:
    from sleepyllama import kinds

    proxy = table()
    chat = Head("POST", "/v1/chat/completions", True, key_ok=False, needs_key=True)
    assert decide(proxy, chat, "192.168.1.9", CACHED) == (
        Action.UNAUTHORIZED, "POST /v1/chat/completions without the backend's API key")
    with_key = Head("POST", "/v1/chat/completions", True, key_ok=True, needs_key=True)
    assert decide(proxy, with_key, "192.168.1.9", CACHED)[0] is Action.WAKE
    # what each kind refuses without its key (llama-server: measured; vLLM: its middleware)
    assert kinds.needs_key("llama-server", "POST", "/v1/chat/completions")
    assert kinds.needs_key("llama-server", "GET", "/props")
    assert not kinds.needs_key("llama-server", "GET", "/health")
    assert not kinds.needs_key("llama-server", "OPTIONS", "/v1/chat/completions")
    assert kinds.needs_key("vllm", "POST", "/v1/completions")
    assert not kinds.needs_key("vllm", "GET", "/metrics")
    assert not kinds.needs_key("ollama", "POST", "/api/chat")  # it takes no key
    # "auto": only where every kind that takes a key agrees
    assert kinds.needs_key("auto", "POST", "/v1/chat/completions")
    assert not kinds.needs_key("auto", "GET", "/props") and not kinds.needs_key("auto", "GET", "/v1/health")
