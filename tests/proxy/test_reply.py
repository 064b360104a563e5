"""What the proxy itself answers (proxy/reply.py), read back by h11, a real HTTP/1.1 parser,
and by the openai package's way of reading an error: status, Retry-After, the JSON body."""

from __future__ import annotations

import json

import h11
import pytest

from sleepyllama.proxy.reply import (
    RETRY_AFTER,
    backend_unavailable,
    error_reply,
    nothing_listens,
)


def parsed(reply: bytes) -> tuple[h11.Response, dict]:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "llama")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(reply)
    connection.receive_data(b"")  # the proxy closes after it: the body must be whole anyway
    response = connection.next_event()
    body = b""
    while not isinstance(event := connection.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), event
        body += event.data
    return response, json.loads(body)


def header(response: h11.Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key == name.lower()), None)


def test_a_503_says_when_to_try_again_and_closes() -> None:
    response, body = parsed(error_reply(503, "asleep", "backend_unavailable"))
    assert response.status_code == 503 and response.reason == b"Service Unavailable"
    assert header(response, b"Retry-After") == str(RETRY_AFTER).encode()
    assert header(response, b"Connection") == b"close"
    assert body == {"error": {"message": "asleep", "type": "backend_unavailable", "code": 503}}


@pytest.mark.parametrize(("status", "reason"), [(400, b"Bad Request"), (401, b"Unauthorized"),
                                                (431, b"Request Header Fields Too Large")])
def test_other_errors_name_their_reason_and_no_retry(status: int, reason: bytes) -> None:
    response, body = parsed(error_reply(status, "no", "invalid_request_error"))
    assert (response.status_code, response.reason, body["error"]["code"]) == (status, reason, status)
    assert header(response, b"Retry-After") is None


def test_a_backend_that_did_not_wake_is_named_with_the_wait_and_the_hint() -> None:
    response, body = parsed(backend_unavailable("10.0.0.5:8080", 180, 181.4,
                                                "nothing listens on port 8080", retry_after=45))
    assert header(response, b"Retry-After") == b"45"
    assert body["error"]["message"] == (
        "sleepyllama: the backend 10.0.0.5:8080 did not wake up within 3m (this request waited "
        "181 s); nothing listens on port 8080; try again in 45 seconds")


def test_nothing_listening_is_its_own_kind_of_error() -> None:
    _response, body = parsed(nothing_listens("nothing listens on port 8080", 21.6))
    assert body["error"]["type"] == "backend_not_listening"
    assert "refused for 22 s" in body["error"]["message"]
