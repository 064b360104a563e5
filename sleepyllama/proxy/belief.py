"""What the proxy believes of its backend outside a wake, and the looks that keep it true.

Readiness (readiness.py) is the pure verdict and its shelf life; this adds where to connect (the
address a look or a wake resolved), the looks themselves (a quick one before a cached answer, one
in the background while clients keep coming to a backend believed ready), the news that changes
the verdict (a failed connect, a lost connection, "going to sleep") and, once the backend is
believed ready, the fetch of its look-only answers (cache.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time

from sleepyllama import ledger
from sleepyllama.proxy import probe as probes
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.prober import Probe, Prober
from sleepyllama.proxy.readiness import Readiness
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_state import Happening

log = logging.getLogger(__name__)

# before answering from the cache: an awake backend on a LAN answers its ready check in
# milliseconds; once it did not, it is believed asleep for a while (each look would wait again)
QUICK_PROBE_TIMEOUT = 0.25
# after a "sleeping" hint the box stops its servers and suspends within seconds; one that still
# answers this much later did not sleep (logind refused, or the hint was not the box's)
SLEEP_CHECKED_AFTER = 60.0


class Belief:
    def __init__(self, context: WakeContext, cache: AnswerCache, prober: Prober, *,
                 probe: Probe, quick_probe: Probe | None = None) -> None:
        config = context.config
        self.config, self.loop, self.record = config, context.loop, context.record
        self.state, self.to_ledger = context.state, context.to_ledger
        self.cache, self.prober, self.probe = cache, prober, probe
        self.quick_probe = quick_probe or (lambda: probes.probe(config, QUICK_PROBE_TIMEOUT,
                                                                QUICK_PROBE_TIMEOUT))
        # a look while nobody uses the box: a busy one may answer slowly; no hurry here
        self.watch_probe = quick_probe or (lambda: probes.probe(config))
        self.readiness = Readiness()
        self.refreshing = False  # a background probe is in flight
        self.watching: asyncio.Future[tuple[bool, str]] | None = None  # the last look's
        self.sockaddr: tuple | None = None
        self.family = socket.AF_INET

    def take_over(self, before: Belief) -> None:
        """What a belief about the same backend knew (a reload with a new config)."""
        self.readiness = dataclasses.replace(before.readiness)
        self.sockaddr, self.family = before.sockaddr, before.family
        self.state.take_over(before.state)

    @property
    def ready(self) -> bool:
        # a verdict from a probe outside a wake (a hint, a look) has no address yet: not ready
        return self.readiness.is_ready(self.loop.time()) and self.sockaddr is not None

    def address(self) -> tuple[int, tuple]:
        """Where to connect: (family, sockaddr) as the last wake or look resolved it."""
        assert self.sockaddr is not None, "connect before any wake or look resolved the backend"
        return self.family, self.sockaddr

    async def look(self) -> str:
        """"awake" or "asleep", outside a wake, before a look-only request is answered from the
        cache: a backend whose readiness is only stale gets one quick probe, and if awake it
        answers the request itself (the cache is "asleep" only when the backend does not
        answer)."""
        if self.readiness.is_asleep(self.loop.time()):
            return "asleep"
        ready, why = await self._look_once()
        if ready:
            log.info("backend %s answered its ready check (%s): passing requests on",
                     self.config.backend, why)
            return "awake"
        self._silent()
        log.info("backend %s does not answer (%s): answering from the cache", self.config.backend,
                 why)
        return "asleep"

    async def keep_answers_if_awake(self, ready_hint: bool = False) -> None:
        """One quick look (at start, or on a "ready" hint): if the backend is awake it is
        believed ready and its look-only answers are fetched now; asleep, nothing is sent."""
        if not ready_hint and (not self.cache.targets or not self.cache.stale(time.time())):
            return
        if self.ready:
            return
        ready, why = await self._look_once()
        if ready:
            log.info("backend %s is awake (%s): keeping its look-only answers now",
                     self.config.backend, why)
        else:
            log.debug("backend %s does not answer at start (%s)", self.config.backend, why)

    async def _look_once(self) -> tuple[bool, str]:
        """One quick ready check outside a wake; ready, the backend is believed so (with the
        address to connect to, as a wake finds it) and its look-only answers are kept."""
        ready, why = await self.prober.once(self.quick_probe)
        if ready and await self.resolve():
            self.believe_ready()
            return True, why
        return False, why

    def confirm_soon(self) -> None:
        """A client goes to a backend believed ready: once half that belief's trust is spent,
        probe again in the background, so that a busy proxy never holds a client for it."""
        if self.refreshing or not self.readiness.stale_soon(self.loop.time()):
            return
        self.refreshing = True

        def done(result: asyncio.Future[tuple[bool, str]]) -> None:
            self.refreshing = False
            if result.cancelled():
                return
            ready, why = result.result()
            if ready:
                self.believe_ready()
            elif self.ready:
                log.info("backend %s is not ready any more (%s): holding new clients until it is",
                         self.config.backend, why)
                self.not_ready()

        asyncio.ensure_future(self.prober.once(self.probe)).add_done_callback(done)

    def believe_ready(self, fill_after: float = 0.0) -> None:
        self.readiness.believe_ready(self.loop.time())
        self.state.happen(Happening.ANSWERED)
        if self.record.answered():
            log.info("backend %s is up: the sleep it told of is over", self.config.backend)
            self.to_ledger(ledger.BoxUp())
        if self.cache.targets and not self.cache.fetching and self.cache.stale(time.time()):
            self.cache.fetching = True
            self.loop.call_later(fill_after, self._fill_cache)

    def _fill_cache(self) -> None:
        """Fetch the answers to keep from the backend, off every client's path."""

        def done(_result: asyncio.Future[None]) -> None:
            self.cache.fetching = False

        self.loop.run_in_executor(None, self.cache.fetch).add_done_callback(done)

    def not_ready(self) -> None:
        """Not ready any more, without word of sleep (a failed refresh, a lost connection)."""
        self.readiness.not_ready()
        self.state.shown()

    def _silent(self, *, down: bool = False) -> None:
        """No answer (down: a failed connect, or the box said it goes to sleep)."""
        self.readiness.believe_asleep(self.loop.time(), down=down)
        self.state.happen(Happening.SILENT)

    # -- news of the backend ------------------------------------------------------------------

    def connect_failed(self, why: str) -> None:
        """A connect to it failed: it may be asleep, and the next wake signals at once."""
        if self.ready:
            log.info("backend %s does not answer (%s): it may be asleep", self.config.backend, why)
            self.not_ready()
        self._silent(down=True)

    def lost(self, error: OSError) -> None:
        """A connection died with the backend's host."""
        if self.ready:
            log.warning("lost the backend %s (%s): the next client will wake it",
                        self.config.backend, error.strerror)
            self.not_ready()

    async def resolve(self) -> bool:
        """The backend's socket address, looked up again at every wake (DHCP may have moved it)."""
        address = self.config.backend
        try:
            infos = await self.loop.getaddrinfo(address.host, address.port,
                                                type=socket.SOCK_STREAM)
        except OSError as error:
            self.record.last_probe = f"cannot resolve {address.host}: {error}"
            return False
        self.family, _, _, _, self.sockaddr = infos[0]
        return True

    def watch(self) -> None:
        """Called every second: a box that nobody has used for a while is looked at, with the
        ready check a wake uses (it counts as no use on the box, and a packet to a sleeping box
        does not wake it); one that does not answer is believed asleep, one that does up."""
        now = self.loop.time()
        if not self.readiness.look_due(now):
            return
        self.readiness.looked_at = now
        was = self.state.evidence

        def done(result: asyncio.Future[tuple[bool, str]]) -> None:
            if result.cancelled() or self.ready:
                return
            ready, why = result.result()
            if ready:
                self.believe_ready()
                return
            if why.startswith("HTTP") or was != "awake":
                return  # it answered: up (loading, or busy); or asleep, as believed
            log.info("backend %s does not answer a look while nobody uses it (%s): it is "
                     "believed asleep (it slept without a word)", self.config.backend, why)
            self._silent(down=True)

        self.watching = asyncio.ensure_future(self.prober.once(self.watch_probe))
        self.watching.add_done_callback(done)

    def going_to_sleep(self) -> None:
        """The box said so: the next client's wake sends its first packet at once. A look a
        while later finds out whether it did (a refused hibernate, a spoofed hint): a box
        that answers then was never asleep, whatever the page would count."""
        self._silent(down=True)
        self.loop.call_later(SLEEP_CHECKED_AFTER, self._check_the_sleep)

    def _check_the_sleep(self) -> None:
        if self.record.sleep_open and not self.ready:
            self.loop.create_task(self.keep_answers_if_awake(ready_hint=True))
