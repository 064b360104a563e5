"""What every part of one backend's wake shares, handed to each part once: the backend's config,
the event loop, the record of the wake, its state (whose change event the program follows),
the ledger, and the word that a client's connection is over (the program counts them).

The wake (wake.py) builds one, and the belief, the waiting room and the pacer take it instead of
a callback each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sleepyllama import ledger
from sleepyllama.config import ProxyConfig
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import WakeState


@dataclass(frozen=True)
class WakeContext:
    config: ProxyConfig
    loop: asyncio.AbstractEventLoop
    record: WakeRecord
    state: WakeState
    to_ledger: Callable[[ledger.Entry], None] = lambda entry: None
    closed: Callable[[], None] = lambda: None  # one client's connection is over

    @classmethod
    def built(cls, config: ProxyConfig, loop: asyncio.AbstractEventLoop,
              record: WakeRecord | None = None, *, changed: Callable[[], None] = lambda: None,
              to_ledger: Callable[[ledger.Entry], None] = lambda entry: None,
              closed: Callable[[], None] = lambda: None) -> WakeContext:
        """A context whose state starts where the record leaves the box (asleep, if the ledger
        says it went to sleep and was not seen up since); by default it tells nobody."""
        record = record or WakeRecord()
        state = WakeState(loop.time, said_asleep=record.sleep_open, changed=changed)
        return cls(config, loop, record, state, to_ledger, closed)

    def wake_timeout(self) -> float:
        """wake_timeout, or where it is the default and the box powers off, a cold boot's."""
        return self.record.wake_timeout(self.config.wake_timeout)
