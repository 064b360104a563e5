"""A server sleepyllama does not know (kinds/none.py): its requests are unseen, and the
config and `check` say so instead of pretending to watch it."""

from __future__ import annotations

from sleepyllama import kinds
from sleepyllama.kinds.none import KIND


def test_an_unknown_server_is_never_taken_for_one_we_know() -> None:
    assert KIND.name == "none" and kinds.get("none") is KIND
    assert not KIND.recognises(["/usr/bin/whisper-server", "--port", "8080"])


def test_its_requests_are_unseen_and_it_says_what_decides_instead() -> None:
    assert KIND.sees_requests is False
    assert "GPU and sleep inhibitors" in KIND.cannot_show
    assert "GET /v1/models" in KIND.look_only
