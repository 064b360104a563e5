"""What every kind shares (kinds/base.py): reading /metrics, a command's flags, what the
journal may show of a command, and where a server is reached."""

from __future__ import annotations

import pytest

from sleepyllama.kinds.base import Unreadable, flag_value, parse_prometheus, redacted, totals, url


def test_metrics_are_summed_over_their_label_sets_and_comments_skipped() -> None:
    text = ("# HELP vllm:num_requests_running Number of requests\n"
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0",model_name="a"} 1.0\n'
            'vllm:num_requests_running{engine="1",model_name="a"} 2.0\n'
            "vllm:generation_tokens_total 1.5e+03\n")
    assert parse_prometheus(text) == {"vllm:num_requests_running": 3.0,
                                      "vllm:generation_tokens_total": 1500.0}


@pytest.mark.parametrize("value", ["NaN", "+Inf", "twelve"])
def test_a_value_that_is_no_finite_number_is_unreadable_not_idle(value: str) -> None:
    with pytest.raises(Unreadable, match="llamacpp:requests_processing"):
        parse_prometheus(f"llamacpp:requests_processing {value}\n")


def test_totals_name_the_metric_a_server_lacks() -> None:
    text = "p_busy 2\np_tokens_total 10\np_seconds_total 1.5\nother_total 4\n"
    assert totals(text, "p_", ["busy"], ["tokens_total"]) == (
        2, 10, "p_seconds_total=1.5,p_tokens_total=10")
    with pytest.raises(Unreadable, match="lacks p_in_flight"):
        totals(text, "p_", ["in_flight"], ["tokens_total"])


def test_the_last_flag_wins_in_either_spelling() -> None:
    command = ["llama-server", "--port", "8080", "-m", "a.gguf", "--port=9090"]
    assert flag_value(command, "--port") == "9090"
    assert flag_value(["llama-server", "--port", "8080"], "--port", "-p") == "8080"
    assert flag_value(["llama-server"], "--port") is None


def test_an_api_key_never_reaches_the_journal() -> None:
    command = ["llama-server", "--api-key", "sk-1", "--hf-token=hf_2", "--token", "t3", "-m",
               "a.gguf"]
    shown = " ".join(redacted(command))
    assert shown == "llama-server --api-key *** --hf-token=*** --token *** -m a.gguf"


@pytest.mark.parametrize(("host", "expected"), [
    ("0.0.0.0", "http://127.0.0.1:8080/health"), ("::", "http://127.0.0.1:8080/health"),
    ("::1", "http://[::1]:8080/health"), ("10.0.0.5", "http://10.0.0.5:8080/health")])
def test_a_wildcard_listener_is_reached_on_loopback(host: str, expected: str) -> None:
    assert url(host, 8080, "/health") == expected
