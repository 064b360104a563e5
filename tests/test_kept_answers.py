"""One answer a proxy keeps for while its box sleeps (kept_answers.py): what it writes it reads
back the same, and what it reads back is checked, since it becomes an answer and its headers."""

from __future__ import annotations

import json
import math

import pytest

from sleepyllama import kept_answers
from sleepyllama.kept_answers import Entry


def test_what_is_kept_is_read_back_the_same() -> None:
    kept = Entry(200, "application/json", b'{"data": []}', 1_800_000_000.5)
    assert kept_answers.entry(json.loads(json.dumps(kept_answers.stored(kept)))) == kept


@pytest.mark.parametrize("change", [
    {"status": 401},  # never kept: a frontend must not be told "wrong key" from the cache
    {"status": True}, {"status": "200"},
    {"content_type": "text/plain\r\nSet-Cookie: x=1"},  # it becomes a header line
    {"content_type": "x" * 201},
    {"fetched_at": math.nan}, {"fetched_at": "yesterday"},
    {"body": "not base64!"}, {"body": 7},
])
def test_a_kept_answer_that_is_not_one_is_refused(change: dict) -> None:
    item = {**kept_answers.stored(Entry(200, "application/json", b"{}", 1.0)), **change}
    with pytest.raises(ValueError):
        kept_answers.entry(item)
