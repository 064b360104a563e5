"""What Python 3.11 added that sleepyllama uses, for Python 3.10 (Ubuntu 22.04's python3, where
many GPU boxes stay): the standard library where it has it, else the backport it came from.

  tomllib             tomli before 3.11 (the same parser, which became tomllib)
  timeout, timeout_at asyncio's own from 3.11; async-timeout (aio-libs) before, the same API
  ASYNC_TIMEOUT       what an asyncio timeout raises: TimeoutError from 3.11 on; before it,
                      asyncio.TimeoutError, which is not TimeoutError on 3.10
"""

from __future__ import annotations

import asyncio
import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout, timeout_at

    import tomllib
else:
    import tomli as tomllib
    from async_timeout import timeout, timeout_at

ASYNC_TIMEOUT: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError)

__all__ = ["ASYNC_TIMEOUT", "timeout", "timeout_at", "tomllib"]
