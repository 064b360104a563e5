"""What every sleepyllama program's command line shares: --config, -v, examples in --help."""

from __future__ import annotations

import argparse
from pathlib import Path

from sleepyllama.config import DEFAULT_PATH, Address, parse_address


def program_parser(prog: str, description: str, examples: list[str],
                   verbose: str | None = "debug logging") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH,
                        help="config file (default: %(default)s)")
    if verbose:
        parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    return parser


def listen_address(text: str) -> Address:
    """--listen HOST:PORT, its error said as argparse says a bad value."""
    try:
        return parse_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
