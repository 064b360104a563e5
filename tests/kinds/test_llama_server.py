"""llama-server's kind: its parsers against output captured from the real server (tests/data/),
and what its command line says (the real server in every mode: test_real_llama_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleepyllama.kinds.base import BrokenSource, Unreadable, parse_prometheus
from sleepyllama.kinds.llama_server import (
    KIND,
    is_router,
    metrics,
    router_models,
    sleeping,
    slots,
)

from conftest import TESTS

DATA = TESTS / "data"


def data(path: str) -> str:
    return (DATA / path).read_text()


def test_metrics_after_one_completion() -> None:
    # 31 prompt tokens + 8 predicted, nothing in flight
    in_flight, tokens, fingerprint = metrics(data("llama-server/metrics-after-one-completion.txt"))
    assert (in_flight, tokens) == (0, 39)
    assert fingerprint  # every *_total counter, n_decode_total and the seconds among them


def test_metrics_counts_running_and_deferred_requests() -> None:
    in_flight, _tokens, _ = metrics(data("llama-server/metrics-one-request-in-flight-one-deferred.txt"))
    assert in_flight == 2


def test_a_decode_moves_the_fingerprint_where_the_rounded_tokens_do_not() -> None:
    text = data("llama-server/metrics-after-one-completion.txt")
    big = text.replace("llamacpp:prompt_tokens_total 31", "llamacpp:prompt_tokens_total 1.05042e+06")
    after = big.replace("llamacpp:n_decode_total ", "llamacpp:n_decode_total 1")
    assert metrics(big)[1] == metrics(after)[1]
    assert metrics(big)[2] != metrics(after)[2]


def test_metrics_without_the_counters_is_unreadable() -> None:
    text = data("llama-server/metrics-after-one-completion.txt")
    without = "\n".join(line for line in text.splitlines() if "requests_processing" not in line)
    with pytest.raises(Unreadable, match="requests_processing"):
        metrics(without)
    with pytest.raises(Unreadable):
        metrics('{"error": {"code": 501}}')
    with pytest.raises(Unreadable, match="finite"):
        metrics(text.replace("llamacpp:prompt_tokens_total 31", "llamacpp:prompt_tokens_total nan"))


def test_prometheus_labels_comments_and_label_sets_summed() -> None:
    text = '# HELP x y\nx_total 3\nper_pos{position="0"} 2.5\nper_pos{position="1"} 1\n\n'
    assert parse_prometheus(text) == {"x_total": 3.0, "per_pos": 3.5}
    with pytest.raises(Unreadable):
        parse_prometheus("x_total three\n")


def test_props_awake_and_sleeping() -> None:
    assert sleeping(json.loads(data("llama-server/props-sleeping.json"))) is True
    assert sleeping(json.loads(data("llama-server/props-awake.json"))) is False
    with pytest.raises(Unreadable):
        sleeping(["not", "props"])


def test_slots_fallback() -> None:
    idle = slots(json.loads(data("llama-server/slots-after-one-completion.json")))
    busy = slots(json.loads(data("llama-server/slots-one-processing.json")))
    assert idle[0] == 0 and busy[0] == 1
    assert idle[1] != slots([{"id": 0, "is_processing": False},
                             {"id": 1, "is_processing": False, "id_task": 9}])[1]
    with pytest.raises(Unreadable):
        slots([{"id": 0}])


def test_router_models() -> None:
    answer = json.loads(data("llama-server/router-models-one-loaded.json"))
    models = router_models(answer)
    assert sorted(status for _, status in models) == ["loaded", "unloaded"]
    with pytest.raises(Unreadable):
        router_models({"data": [{"id": "m"}]})
    with pytest.raises(Unreadable):
        router_models({"error": "x"})


@pytest.mark.parametrize(("command", "router"), [
    (("llama-server", "-m", "/m.gguf"), False),
    (("llama-server", "--model=/m.gguf"), False),
    (("llama-server", "-hf", "org/repo"), False),
    (("llama-server", "--models-dir", "/models"), True),
    (("llama-server", "--models-preset", "/p.ini", "--port", "8080"), True),
])
def test_router_mode_is_a_command_without_a_model(command: tuple[str, ...], router: bool) -> None:
    assert is_router(command) is router


def test_api_key_from_the_command(tmp_path: Path) -> None:
    assert KIND.api_key(("llama-server", "-m", "m")) is None
    assert KIND.api_key(("llama-server", "--api-key", "secret")) == "secret"
    assert KIND.api_key(("llama-server", "--api-key", "one,two")) == "one"
    key_file = tmp_path / "keys"
    key_file.write_text("from-file\nsecond\n")
    assert KIND.api_key(("llama-server", "--api-key-file", str(key_file))) == "from-file"
    missing = ("llama-server", "--api-key-file", str(tmp_path / "absent"))
    with pytest.raises(Unreadable, match="api-key-file"):
        KIND.api_key(missing)
    # an unreadable key file is an unreadable server at each look, not a crash
    source = KIND.source("http://127.0.0.1:1", missing)
    assert isinstance(source, BrokenSource)
    with pytest.raises(Unreadable, match="api-key-file"):
        source.look()


def test_health_url_follows_the_command_line() -> None:
    assert KIND.health_url(("llama-server", "-m", "m.gguf")) == "http://127.0.0.1:8080/health"
    assert KIND.health_url(("llama-server", "--host", "0.0.0.0", "--port", "9000")) == (
        "http://127.0.0.1:9000/health")
    assert KIND.health_url(("llama-server", "--host", "::1", "--port", "1")) == (
        "http://[::1]:1/health")
    assert KIND.health_url(("llama-server", "--port=9001")) == "http://127.0.0.1:9001/health"


def test_a_router_whose_loaded_model_has_no_metrics_is_unknown_not_unloaded() -> None:
    """Found by trying: /models says loaded while /metrics?model=ID&autoload=false answers 404.
    Reading that as "every model unloaded" let the box suspend under a loaded model."""
    from sleepyllama.http_get import Answer
    from sleepyllama.kinds.llama_server import LlamaServerSource

    answers = {"/props": Answer(200, data("llama-server/router-props.json").encode()),
               "/models": Answer(200, data("llama-server/router-models-one-loaded.json").encode())}

    class Router(LlamaServerSource):
        def get(self, path: str) -> Answer:
            return answers.get(path.split("?")[0] if "?" not in path or path.startswith("/models")
                               else path, Answer(404, b'{"error": "not found"}'))

    with pytest.raises(Unreadable, match="404"):
        Router("http://127.0.0.1:1").read()
