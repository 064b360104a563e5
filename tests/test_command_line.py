"""What every program's command line shares (command_line.py): --config, -v, and examples in
--help, as a person reads them."""

from __future__ import annotations

import argparse

import pytest

from sleepyllama.command_line import listen_address, program_parser
from sleepyllama.config import DEFAULT_PATH


def test_help_ends_with_the_examples_as_written() -> None:
    parser = program_parser("sleepyllama-x", "Does x.", ["sleepyllama-x --dry-run",
                                                         "sleepyllama-x -v"])
    help_text = parser.format_help()
    assert help_text.rstrip().endswith(
        "examples:\n  sleepyllama-x --dry-run\n  sleepyllama-x -v")
    assert f"(default: {DEFAULT_PATH})" in help_text and "debug logging" in help_text


def test_a_program_without_verbose_has_no_v() -> None:
    parser = program_parser("sleepyllama-x", "Does x.", [], verbose=None)
    with pytest.raises(SystemExit):
        parser.parse_args(["-v"])
    assert parser.parse_args([]).config == DEFAULT_PATH


def test_a_bad_listen_address_is_said_as_argparse_says_a_bad_value(capsys) -> None:
    assert (listen_address("0.0.0.0:3939").host, listen_address("0.0.0.0:3939").port) == (
        "0.0.0.0", 3939)
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--listen", type=listen_address)
    with pytest.raises(SystemExit):
        parser.parse_args(["--listen", "nowhere"])
    error = capsys.readouterr().err
    assert "argument --listen:" in error and "Traceback" not in error
