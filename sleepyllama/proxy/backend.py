"""One backend as the proxy sees it: where each of its clients goes.

A client meets the wake (wake.py) and goes one of three ways (route): to the backend, through
the connector, when it is believed ready; to reception, which reads its requests first, where
the config asks for that (answer_while_asleep, wake_on, wake_from, wake_progress) and nothing of
it has been read yet; else to the wake, to be held until the backend is ready. Reception sends
each client back here with what it read; a connect that fails sends it back too, and the
wake then believes the backend down. Each client that reaches the backend may begin a use
(uses.py), and learned pre-wakes (prewaker.py) wake the box ahead of the next.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

from sleepyllama.config import ProxyConfig
from sleepyllama.proxy import policy
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.client import Client
from sleepyllama.proxy.connect import Connector
from sleepyllama.proxy.prewaker import Prewaker
from sleepyllama.proxy.prober import Probe
from sleepyllama.proxy.progress import Progress
from sleepyllama.proxy.reception import Reception
from sleepyllama.proxy.splice import PumpState, Splice
from sleepyllama.proxy.uses import Uses
from sleepyllama.proxy.wake import Wake
from sleepyllama.proxy.wol import WakeSender


class Backend:
    def __init__(
        self,
        config: ProxyConfig,
        loop: asyncio.AbstractEventLoop,
        sender: WakeSender,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_close: Callable[[], None] = lambda: None,
        probe: Probe | None = None,
        cache: AnswerCache | None = None,
        ledger_file: Path | None = None,
        key: str | None = None,
    ) -> None:
        self.config, self.loop = config, loop
        self.cache = cache or AnswerCache(f"http://{config.backend}",
                                          config.answer_while_asleep or (), None, config.kind)
        # the wake first: its way out (connect) is this backend's, which the connector serves
        self.wake = Wake(config, loop, sender, self.cache, connect=self.connect,
                         changed=on_change, closed=on_close, probe=probe,
                         ledger_file=ledger_file)
        self.connector = Connector(loop, address=self.wake.address, refused=self._refused,
                                   lost=self.wake.lost, closed=on_close)
        self.uses = Uses(time.monotonic, self.wake.to_ledger)
        self.prewaker = Prewaker(config, self.wake, ledger_file)
        self.sender = sender
        self.progress = Progress(loop, config, self.wake, self.connector.open)
        self.reception = Reception(loop, config, self.cache, self.wake, self.route,
                                   progress=self.progress.serve, key=key)
        self.reads_requests = policy.needs_parsing(config) or config.wake_from is not None

    def serve(self, sock: socket.socket, peer: str, address: str = "") -> None:
        """A client just accepted."""
        self.route(Client(sock, peer, address, arrived=self.loop.time()))

    def route(self, client: Client) -> None:
        if self.wake.ready:
            self.wake.confirm_soon()
            self.connect(client)
        elif self.reads_requests and not client.received:
            self.reception.receive(client)
        else:
            self.wake.hold(client)

    def connect(self, client: Client) -> None:
        """To the backend, believed ready: the way out of the wake too."""
        self.uses.connected(client.peer)
        self.connector.connect(client)

    def _refused(self, client: Client | None, why: str) -> None:
        """A connect failed: the backend may be asleep. A client passed on at once while it was
        believed ready, unread, meets reception now (a model-list request is answered from the
        cache, not held for a wake); one that was read is held."""
        self.wake.connect_failed(why)
        if client is not None:
            self.route(client)

    def busy(self) -> bool:
        """Whether it still holds, answers or splices anyone (a retired one is let finish)."""
        return bool(self.wake.busy() or self.connector.splices or self.reception.reading
                    or self.progress.tasks)

    # -- restart and shutdown -----------------------------------------------------------------

    def detach_kept(self) -> tuple[list[Client], list[Splice]]:
        """Held clients (and those whose request is being read, or whose connect is under
        way), and running splices, out of this process's hands, for a restart to go on with
        (handover.py); close_all() then closes only the rest."""
        return (self.wake.take_held() + self.reception.take_unanswered()
                + self.connector.take_unconnected(), self.connector.detach())

    def adopt(self, held: list[Client],
              splices: list[tuple[socket.socket, socket.socket, tuple[PumpState, PumpState]]]
              ) -> None:
        """Go on with what the process before a restart held and spliced."""
        for client_sock, backend_sock, pumps in splices:
            self.connector.adopt(client_sock, backend_sock, pumps)
        for client in held:
            if client.received:
                self.wake.hold(client)  # the wake loop looks first: an awake one gets no packet
            else:
                self.route(client)  # its request is read again, from what was read of it

    def release(self) -> None:
        """A backend retired by a reload, holding nobody any more: the fds it kept go."""
        self.wake.release()

    def close_all(self) -> None:
        self.reception.close_all()
        self.progress.close_all()
        self.wake.close()
        self.connector.close_all()
