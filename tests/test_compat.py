"""What Python 3.11 added, for 3.10 (compat.py): the same names on every Python, and the config's
readers (the idle check, every 30 s) load no asyncio for them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from sleepyllama import compat


def test_the_names_are_there_on_this_python() -> None:
    assert compat.tomllib.loads('a = 1\n') == {"a": 1}
    assert asyncio.TimeoutError in compat.ASYNC_TIMEOUT and TimeoutError in compat.ASYNC_TIMEOUT

    async def late() -> bool:
        try:
            async with compat.timeout(0.01):
                await asyncio.Event().wait()
        except compat.ASYNC_TIMEOUT:
            return True
        return False

    assert asyncio.run(late())


def test_reading_the_config_imports_no_asyncio() -> None:
    """Asked for __path__ by an import, compat imported asyncio: 25 ms of every idle check."""
    found = subprocess.run(
        [sys.executable, "-c", "import sys, sleepyllama.config, sleepyllama.host.idle_check; "
         "print(sorted(m for m in ('asyncio', 'http.client', 'prometheus_client', 'pystemd') "
         "if m in sys.modules))"], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
