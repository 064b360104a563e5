"""What Python 3.11 added that sleepyllama uses, for Python 3.10 (Ubuntu 22.04's python3, where
many GPU boxes stay): the standard library where it has it, else the backport it came from.

  tomllib             tomli before 3.11 (the same parser, which became tomllib)
  timeout, timeout_at asyncio's own from 3.11; async-timeout (aio-libs) before, the same API
  ASYNC_TIMEOUT       what an asyncio timeout raises: TimeoutError from 3.11 on; before it,
                      asyncio.TimeoutError, which is not TimeoutError on 3.10
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

if TYPE_CHECKING:
    from asyncio import timeout, timeout_at

    ASYNC_TIMEOUT: tuple[type[BaseException], ...]

__all__ = ["ASYNC_TIMEOUT", "timeout", "timeout_at", "tomllib"]
ASYNC_NAMES = ("ASYNC_TIMEOUT", "timeout", "timeout_at")


def __getattr__(name: str) -> object:
    """The asyncio names, imported when first asked for: the config, which every program reads,
    needs tomllib alone, and asyncio costs the idle check (every 30 s) 25 ms of CPU. (An import
    asks for __path__ and others here too: those are not found, at no cost.)"""
    if name not in ASYNC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import asyncio

    if name == "ASYNC_TIMEOUT":
        return (TimeoutError, asyncio.TimeoutError)
    if sys.version_info >= (3, 11):
        return getattr(asyncio, name)
    import async_timeout

    return getattr(async_timeout, name)
