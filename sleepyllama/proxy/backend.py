"""One backend as the proxy sees it: whether it is ready, the clients held for it, and its wake.

"Ready" is evidence with a shelf life: a health probe's 200 is trusted for READY_TRUST seconds
(refreshed in the background while clients keep coming). A client arriving while it holds is
connected straight away. Otherwise (first client, a stale verdict, a connect refused or timed
out, a lost backend) it is held: its bytes stay queued in its socket, unread, while the wake
loop probes readiness and, unless the first probe succeeds at once, sends wake signals on
WakeSchedule. The shelf life is what keeps a client from meeting llama-server's 503 "Loading
model" when the box was woken by something else or the server restarted: a connect that
succeeds proves nothing, only /health does.

When the backend is ready every held client is connected, in arrival order. A held client that
hangs up is dropped at once; one held past wake_timeout gets an HTTP 503 (if it spoke HTTP) or a
close. Where the config asks for it (answer_while_asleep, wake_on, wake_from), a client that
finds the backend not ready meets reception.py first, which may answer it from the cache or
refuse it; the clients it hands over carry the bytes it read, sent to the backend first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import hints, history, ledger
from sleepyllama.config import ProxyConfig, format_duration
from sleepyllama.proxy import policy
from sleepyllama.proxy import probe as probes
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.progress import Progress, Waker
from sleepyllama.proxy.reception import Reception, Visitor
from sleepyllama.proxy.reply import RETRY_AFTER, backend_unavailable
from sleepyllama.proxy.splice import Splice
from sleepyllama.proxy.waiting import Client, WaitingRoom, linger
from sleepyllama.proxy.wol import WakeSchedule, WakeSender

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.1  # readiness probes while waking: the wake-to-first-byte lag is about half this
# before answering from the cache: an awake backend on a LAN answers its ready check in
# milliseconds; once it did not, it is believed asleep for a while (each look would wait again)
QUICK_PROBE_TIMEOUT = 0.25
ASLEEP_TRUST = 30.0
# after a wake gave up, a client arriving within RECENT_GIVE_UP is held only as long as a fresh
# attempt needs to show the box is still down: the openai client's two retries of a 503 (and a
# user pressing "regenerate") no longer cost 3 x wake_timeout each
RECENT_GIVE_UP = 600.0
RECHECK_FRACTION, RECHECK_MIN = 1 / 6, 5.0
READY_TRUST = 5.0  # seconds a 200 from the health probe is believed without asking again
SEND_GRACE = 0.25  # an awake backend answers the first probe within this: no wake signal needed
CONNECT_TIMEOUT = 1.0  # a ready backend on a LAN answers in milliseconds; silence means asleep
# a backend socket notices a vanished host within about 30 s instead of hanging forever
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 4
USER_TIMEOUT_MS = 30_000

Probe = Callable[[], tuple[bool, str]]


@dataclass(eq=False)
class Waiter:
    """A client that waits for the backend in a task of its own (a stream with progress) rather
    than unread in the waiting room."""

    ready: asyncio.Future[bool]
    peer: str
    request: str
    agent: str = ""


def tune_backend_socket(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # SSE tokens go out at once
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


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
        self.ledger_file = ledger_file  # this proxy's record of wakes (ledger.py), if any
        # what a wake costs here, learned: the last ten (ledger.py keeps them across restarts)
        self.wakes: list[dict] = ([e for e in ledger.read(ledger_file) if e["event"] == "wake"]
                                  if ledger_file is not None else [])[-10:]
        self.config, self.loop, self.sender = config, loop, sender
        self.on_change = on_change  # the status line may have changed
        self.on_close = on_close  # one client's connection is over
        self.probe = probe or (lambda: probes.probe(config))
        self.quick_probe = probe or (lambda: probes.probe(config, timeout=QUICK_PROBE_TIMEOUT))
        self.asleep_until = 0.0  # loop time until which the backend is believed asleep
        self.ready_until = 0.0  # loop time until which the last successful probe is trusted
        self.last_ready: float | None = None  # loop time of the last successful probe
        self.refreshing = False  # a background probe is in flight
        self.known_down = False  # a connect just failed: no grace before the first wake signal
        self.sockaddr: tuple | None = None
        self.family = socket.AF_INET
        self.waiting = WaitingRoom(loop, hung_up=self._hung_up, expired=self._give_up)
        self.waiters: list[Waiter] = []
        self.prewakes: set[asyncio.Task[bool]] = set()
        self.probe_now = asyncio.Event()  # a "ready" hint: the wake loop probes at once
        self.splices: set[Splice] = set()
        self.schedule = WakeSchedule(config.wol_interval)
        self.wake_task: asyncio.Task[None] | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.wake_started: float | None = None
        self.wake_signals = 0  # sent during the current wake
        self.wake_first: dict[str, str] = {}  # its first client and request, for the ledger
        self.last_probe = ""
        self.gave_up = False  # a client of the current (or last) wake was answered 503
        self.last_give_up: float | None = None  # loop time of the last wake that gave up
        self.cache = cache or AnswerCache(f"http://{config.backend}",
                                          config.answer_while_asleep or (), None, config.kind)
        self.progress = Progress(loop, config, Waker(
            ready=self.wait_ready, phase=self.phase, packets=lambda: self.wake_signals,
            address=lambda: (self.family, self.sockaddr)), closed=on_close)
        self.reception = Reception(loop, config, self.cache, hold=self._hold_visitor,
                                   linger=lambda sock: linger(loop, sock, on_close),
                                   closed=on_close, changed=on_change, record=self.record,
                                   key=key, backend_state=self.state_for_cache,
                                   progress=self.progress.serve, prewake=self.prewake)
        self.reads_requests = policy.needs_parsing(config) or config.wake_from is not None

    # -- readiness ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        # a verdict from a probe outside a wake (a hint, a look) has no address yet: not ready
        return self.loop.time() < self.ready_until and self.sockaddr is not None

    def _believe_ready(self) -> None:
        self.last_ready = self.loop.time()
        self.ready_until = self.last_ready + READY_TRUST
        if self.cache.targets and not self.cache.fetching and self.cache.stale(time.time()):
            self._fill_cache()

    def _fill_cache(self) -> None:
        """Fetch the answers to keep from the backend, off every client's path."""
        self.cache.fetching = True

        def done(_result: asyncio.Future[None]) -> None:
            self.cache.fetching = False

        self.loop.run_in_executor(None, self.cache.fetch).add_done_callback(done)

    async def state_for_cache(self) -> str:
        """"awake", "waking" or "asleep", asked before a look-only request is answered from the
        cache: a backend whose readiness is only stale gets one quick probe, and if awake it
        answers the request itself (the cache is "asleep" only when the backend does not
        answer)."""
        if self.ready:
            return "awake"
        if self.wake_task is not None:
            return "waking"
        if self.loop.time() < self.asleep_until:
            return "asleep"
        ready, why = await self.loop.run_in_executor(None, self.quick_probe)
        if ready and await self._resolve():  # the address to connect to, as a wake finds it
            log.info("backend %s answered its ready check (%s): passing requests on",
                     self.config.backend, why)
            self._believe_ready()
            return "awake"
        self.asleep_until = self.loop.time() + ASLEEP_TRUST
        log.info("backend %s does not answer (%s): answering from the cache", self.config.backend,
                 why)
        return "asleep"

    async def fill_cache_if_awake(self, ready_hint: bool = False) -> None:
        """One quick look (at start, or on a "ready" hint): if the backend is awake it is
        believed ready and its look-only answers are fetched now; asleep, nothing is sent."""
        if not ready_hint and (not self.cache.targets or not self.cache.stale(time.time())):
            return
        ready, why = await self.loop.run_in_executor(None, self.quick_probe)
        if ready and not self.ready and await self._resolve():
            log.info("backend %s is awake (%s): keeping its look-only answers now",
                     self.config.backend, why)
            self._believe_ready()
        elif not ready:
            log.debug("backend %s does not answer at start (%s)", self.config.backend, why)

    def _not_ready(self) -> None:
        self.ready_until = 0.0
        self.on_change()

    def _refresh_in_background(self) -> None:
        """Probe again while clients keep coming, so a busy proxy never holds them for it."""
        self.refreshing = True

        def done(result: asyncio.Future[tuple[bool, str]]) -> None:
            self.refreshing = False
            ready, why = result.result()
            if ready:
                self._believe_ready()
            elif self.ready:
                log.info("backend %s is not ready any more (%s): holding new clients until it is",
                         self.config.backend, why)
                self._not_ready()

        self.loop.run_in_executor(None, self.probe).add_done_callback(done)

    # -- one client --------------------------------------------------------------------------

    def serve(self, sock: socket.socket, peer: str, address: str = "") -> None:
        now = self.loop.time()
        if self.ready:
            if now > self.ready_until - READY_TRUST / 2 and not self.refreshing:
                self._refresh_in_background()
            self._connect(Client(sock, peer, now, now + self.hold_limit()))
        elif self.reads_requests:
            self.reception.receive(Visitor(sock, peer, address))
        else:
            self._hold(Client(sock, peer, now, now + self.hold_limit()))

    def _hold_visitor(self, visitor: Visitor) -> None:
        now = self.loop.time()
        client = Client(visitor.sock, visitor.peer, now, now + self.hold_limit(),
                        prefix=visitor.prefix, request=visitor.request, agent=visitor.agent)
        if self.ready:  # woken meanwhile, by another client
            self._connect(client)
        else:
            self._hold(client)

    def _connect(self, client: Client) -> None:
        backend = socket.socket(self.family, socket.SOCK_STREAM)
        tune_backend_socket(backend)
        error = backend.connect_ex(self.sockaddr)
        if error == 0:
            self._splice(client, backend)
        elif error == errno.EINPROGRESS:
            timer = self.loop.call_later(CONNECT_TIMEOUT, self._connect_failed, client, backend,
                                         "connect timed out")
            self.loop.add_writer(backend.fileno(), self._connected, client, backend, timer)
        else:
            self._connect_failed(client, backend, errno.errorcode.get(error, str(error)))

    def _connected(
        self, client: Client, backend: socket.socket, timer: asyncio.TimerHandle
    ) -> None:
        self.loop.remove_writer(backend.fileno())
        timer.cancel()
        error = backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._connect_failed(client, backend, errno.errorcode.get(error, str(error)))
        else:
            self._splice(client, backend)

    def _connect_failed(self, client: Client, backend: socket.socket, why: str) -> None:
        self.loop.remove_writer(backend.fileno())
        backend.close()
        if self.ready:
            log.info("backend %s does not answer (%s): it may be asleep", self.config.backend, why)
            self._not_ready()
        self.known_down = True
        self.asleep_until = self.loop.time() + ASLEEP_TRUST
        self._hold(client)

    def _splice(self, client: Client, backend: socket.socket) -> None:
        splice = Splice(self.loop, client.sock, backend, self._splice_closed)
        self.splices.add(splice)
        if client.prefix:  # what reception read goes first, then the rest of the stream
            self.loop.create_task(self._send_prefix_then_splice(client.prefix, backend, splice))
        else:
            splice.start()

    async def _send_prefix_then_splice(self, prefix: bytes, backend: socket.socket,
                                       splice: Splice) -> None:
        try:
            await self.loop.sock_sendall(backend, prefix)
        except OSError:
            splice.close()
            return
        splice.start()

    def _splice_closed(self, splice: Splice, backend_lost: OSError | None) -> None:
        self.splices.discard(splice)
        if backend_lost is not None and self.ready:
            log.warning("lost the backend %s (%s): the next client will wake it",
                        self.config.backend, backend_lost.strerror)
            self._not_ready()
        self.on_close()

    # -- holding ------------------------------------------------------------------------------

    def _hold(self, client: Client) -> None:
        self.waiting.add(client)
        log.debug("holding %s while %s wakes", client.peer, self.config.backend)
        if self.wake_task is None:
            self.wake_task = self.loop.create_task(self._wake())

    def _hung_up(self, client: Client) -> None:
        log.debug("%s hung up while held", client.peer)
        client.sock.close()
        self.on_close()
        self.on_change()

    def hold_limit(self) -> float:
        """How long a new client is held: wake_timeout, or after a recent give-up only as long
        as a fresh attempt needs to show that the box is still down."""
        if self.last_give_up is not None and self.loop.time() - self.last_give_up < RECENT_GIVE_UP:
            return min(self.config.wake_timeout,
                       max(RECHECK_MIN, self.config.wake_timeout * RECHECK_FRACTION))
        return self.config.wake_timeout

    def give_up_hint(self, arrived: float) -> str:
        """What a 503 adds: why the box may not answer, and an attempt that had failed before
        this client came."""
        parts = [probes.hint(self.last_probe, self.config.backend)]
        before = self.last_give_up
        if before is not None and before < arrived:
            ago = format_duration(round(self.loop.time() - before))
            parts.append(f"it did not wake within {format_duration(self.config.wake_timeout)} "
                         f"at the attempt {ago} ago either")
        return "; ".join(part for part in parts if part)

    def retry_after(self) -> int:
        """What a 503's Retry-After says: as long as a wake takes here (the median of the last
        ones), 30 s before any was seen."""
        typical = history.typical_wake(self.wakes)
        return RETRY_AFTER if typical is None else max(5, min(300, math.ceil(typical[0])))

    def clients_waiting(self) -> int:
        return len(self.waiting) + len(self.waiters)

    def phase(self) -> str:
        """"loading" once the box answers its ready check, not yet with 200; else "waking"."""
        return "loading" if self.last_probe.startswith("HTTP ") else "waking"

    def hinted(self, hint: hints.Hint, sender: str) -> None:
        """A hint from the GPU box (hints.py): it can cause a probe, or mark the backend asleep
        so that the next client starts a wake at once; a spoofed one, nothing worse."""
        if hint.event == "ready":
            log.info("hint from %s: %s is ready%s", sender, hint.name or "a server",
                     "" if self.ready else "; probing now")
            if self.wake_task is not None:
                self.probe_now.set()
            elif not self.ready:
                self.loop.create_task(self.fill_cache_if_awake(ready_hint=True))
        else:
            log.info("hint from %s: the box is going to sleep", sender)
            self.ready_until = 0.0
            self.asleep_until = self.loop.time() + ASLEEP_TRUST
            self.known_down = True  # the next client's wake sends its first packet at once
            self.on_change()

    def prewake(self, peer: str, request: str, agent: str = "") -> None:
        """Start a wake in the background for a request that only looks (prewake_on): the box
        comes up while the user types."""
        if self.ready or self.wake_task is not None:
            return
        log.info("pre-wake of %s: %s from %s", self.config.backend, request, peer)
        task = self.loop.create_task(self.wait_ready(peer, f"{request} (pre-wake)", agent))
        self.prewakes.add(task)
        task.add_done_callback(self.prewakes.discard)

    async def wait_ready(self, peer: str, request: str, agent: str = "") -> bool:
        """Wake the backend for a client that waits in a task of its own; True once it is ready,
        False when it did not wake within wake_timeout."""
        if self.ready and self.sockaddr is not None:
            return True
        waiter = Waiter(self.loop.create_future(), peer, request, agent)
        self.waiters.append(waiter)
        if self.wake_task is None:
            self.wake_task = self.loop.create_task(self._wake())
        self.on_change()
        started = self.loop.time()
        try:
            async with asyncio.timeout(self.hold_limit()):
                return await asyncio.shield(waiter.ready)
        except TimeoutError:
            self._note_give_up(self.loop.time() - started)
            return False
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            self.on_change()

    def record(self, event: str, **fields: object) -> None:
        if self.ledger_file is not None:
            ledger.append(self.ledger_file, event, **fields)

    def _give_up(self, client: Client) -> None:
        waited = self.loop.time() - client.arrived
        hint = self.give_up_hint(client.arrived)  # before this give-up is noted
        self._note_give_up(waited)
        try:
            first_bytes = client.prefix or client.sock.recv(1024, socket.MSG_PEEK)
        except OSError:
            first_bytes = b""
        try:
            if policy.speaks_http1(first_bytes):
                log.info("answering %s with 503: its backend did not wake", client.peer)
                client.sock.send(backend_unavailable(
                    str(self.config.backend), round(client.deadline - client.arrived, 1), waited,
                    hint, self.retry_after()))
            else:
                log.info("closing %s: its backend did not wake", client.peer)
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            client.sock.close()
            self.on_close()
        else:
            linger(self.loop, client.sock, self.on_close)
        self.on_change()

    def _note_give_up(self, waited: float) -> None:
        """The journal line and the ledger entry of a wake that gave up: once per wake."""
        if not self.gave_up:
            self.gave_up = True
            self.last_give_up = self.loop.time()
            self.record("wake", **self.wake_first, signals=self.wake_signals,
                        gave_up_after=round(waited, 1))
            hint = probes.hint(self.last_probe, self.config.backend)
            log.warning(
                "backend %s did not wake within %s (%d wake signals sent, last probe: %s)%s",
                self.config.backend, format_duration(round(waited)),
                self.wake_signals, self.last_probe or "none yet", f": {hint}" if hint else "",
            )

    # -- waking -------------------------------------------------------------------------------

    async def _wake(self) -> None:
        """Probe until ready, sending wake signals meanwhile; then connect every held client.

        The first signal waits SEND_GRACE for the first probe, so that a backend that is merely
        unconfirmed (a stale verdict, a fresh proxy) is not sent packets or logged as woken; one
        whose connect just failed is known to be down and gets its first signal at once.
        """
        started, finished = self.loop.time(), False
        self.wake_signals, self.gave_up, self.last_probe = 0, False, ""
        grace, self.known_down = (0.0 if self.known_down else SEND_GRACE), False
        self.send_timer = self.loop.call_later(grace, self._send_when_due)
        try:
            while True:
                ready, self.last_probe = await self.loop.run_in_executor(None, self.probe)
                if ready and await self._resolve():
                    break
                if not self.waiting and not self.waiters:
                    if self.wake_signals:
                        log.info("stopped waking %s after %.1f s: no client waits any more",
                                 self.config.backend, self.loop.time() - started)
                        if not self.gave_up:
                            self.record("wake", **self.wake_first, signals=self.wake_signals,
                                        abandoned_after=round(self.loop.time() - started, 1))
                    return
                self.probe_now.clear()
                with contextlib.suppress(TimeoutError):  # a "ready" hint cuts the wait short
                    await asyncio.wait_for(self.probe_now.wait(), PROBE_INTERVAL)
            if self.wake_signals:
                log.info("backend %s ready after %.1f s (%d wake signals sent, %d client(s) waiting)",
                         self.config.backend, self.loop.time() - started, self.wake_signals,
                         self.clients_waiting())
                self.record("wake", **self.wake_first, signals=self.wake_signals,
                            ready_after=round(self.loop.time() - started, 1))
                self.wakes = [*self.wakes, {"event": "wake",
                                            "ready_after": self.loop.time() - started}][-10:]
            else:
                log.debug("backend %s confirmed ready (%s)", self.config.backend, self.last_probe)
            self._believe_ready()
            self.last_give_up = None
            for client in self.waiting.take_all():
                self._connect(client)
            for waiter in self.waiters:
                if not waiter.ready.done():
                    waiter.ready.set_result(True)
            finished = True
        finally:
            if self.send_timer is not None:
                self.send_timer.cancel()
            self.wake_task = None
            self.wake_started = None
            if finished and self.waiting:
                # held again while the others were connected (a connect failed right after the
                # 200): it needs a wake of its own, not a 503 with nothing probing for it
                self.wake_task = self.loop.create_task(self._wake())
            self.on_change()

    def _send_when_due(self) -> None:
        """Send a wake signal now if the schedule allows; re-armed for as long as clients wait."""
        now = self.loop.time()
        if self.clients_waiting() and self.schedule.due(now):
            if self.wake_started is None:
                self.wake_started = now
                first: Client | Waiter = self.waiting.first() if self.waiting else self.waiters[0]
                self.wake_first = {"first": first.peer, "request": first.request,
                                   **({"agent": first.agent} if first.agent else {})}
                # naming the client tells a person who keeps waking the box (a polling frontend,
                # LiteLLM's background health checks: chats, but for their User-Agent)
                log.info("waking %s with %s: %d client(s) waiting, first %s%s%s (last probe: %s)",
                         self.config.backend, self.sender.describe(), self.clients_waiting(),
                         first.peer, f" {first.request}" if first.request else "",
                         f" (User-Agent: {first.agent})" if first.agent else "",
                         self.last_probe or "none yet")
            if self.sender.send():  # count only what went out
                self.wake_signals += 1
                log.debug("sent %s (%d)", self.sender.describe(), self.wake_signals)
            self.schedule.mark_sent(now)
            self.on_change()
        delay = self.schedule.seconds_until_due(now) or self.schedule.interval
        self.send_timer = self.loop.call_later(delay, self._send_when_due)

    async def _resolve(self) -> bool:
        """The backend's socket address, looked up again at every wake (DHCP may have moved it)."""
        address = self.config.backend
        try:
            infos = await self.loop.getaddrinfo(address.host, address.port,
                                                type=socket.SOCK_STREAM)
        except OSError as error:
            self.last_probe = f"cannot resolve {address.host}: {error}"
            return False
        self.family, _, _, _, self.sockaddr = infos[0]
        return True

    # -- shutdown -----------------------------------------------------------------------------

    def close_all(self) -> None:
        self.reception.close_all()
        self.progress.close_all()
        for task in list(self.prewakes):
            task.cancel()
        for client in self.waiting.take_all():
            client.sock.close()
        for splice in list(self.splices):
            splice.close()
        if self.wake_task is not None:
            self.wake_task.cancel()
        self.sender.close()
