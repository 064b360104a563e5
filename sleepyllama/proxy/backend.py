"""One backend as the proxy sees it: the clients held for it and its wake.

What the proxy believes of the backend (readiness.py) and the record of its wake
(wake_record.py) are pure and kept apart, and connecting and splicing is connect.py's; this is
the I/O around them. A client arriving while
the backend is believed ready is connected straight away. Otherwise (first client, a stale
verdict, a connect refused or timed out, a lost backend) it is held: its bytes stay queued in
its socket, unread, while the wake loop probes readiness and, unless the first probe succeeds
at once, sends wake signals on WakeSchedule.

When the backend is ready every held client is connected, in arrival order. A held client that
hangs up is dropped at once; one held past wake_timeout gets an HTTP 503 (if it spoke HTTP) or a
close. Where the config asks for it (answer_while_asleep, wake_on, wake_from), a client that
finds the backend not ready meets reception.py first, which may answer it from the cache or
refuse it; the clients it hands over carry the bytes it read, sent to the backend first.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import hints, ledger, sleep_actions
from sleepyllama.compat import ASYNC_TIMEOUT, timeout
from sleepyllama.config import ProxyConfig
from sleepyllama.proxy import policy
from sleepyllama.proxy import probe as probes
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.connect import Connector
from sleepyllama.proxy.prober import Answer, Probe, Prober
from sleepyllama.proxy.progress import Progress, Waker
from sleepyllama.proxy.readiness import Readiness
from sleepyllama.proxy.reception import Reception, Visitor
from sleepyllama.proxy.reply import backend_unavailable, nothing_listens
from sleepyllama.proxy.splice import PumpState, Splice
from sleepyllama.proxy.waiting import Client, WaitingRoom, linger, reply_if_http
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wol import WakeSchedule, WakeSender
from sleepyllama.words import format_duration

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.1  # readiness probes while waking: the wake-to-first-byte lag is about half this
# a LAN answers a connect in a millisecond; a box that drops packets (asleep) holds a probe for
# this long, and the next probes do not wait for it (prober.py)
WAKE_CONNECT_TIMEOUT = 0.5
# before answering from the cache: an awake backend on a LAN answers its ready check in
# milliseconds; once it did not, it is believed asleep for a while (each look would wait again)
QUICK_PROBE_TIMEOUT = 0.25
SEND_GRACE = 0.25  # an awake backend answers the first probe within this: no wake signal needed
# a woken box's answers are kept this long after ready: the fetch's requests (and the thread
# that makes them) would otherwise compete with the held clients' own, to the box and for the GIL
CACHE_AFTER_WAKE = 1.0



@dataclass(eq=False)
class Waiter:
    """A client that waits for the backend in a task of its own (a stream with progress) rather
    than unread in the waiting room."""

    ready: asyncio.Future[bool]
    peer: str
    request: str
    agent: str = ""


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
        # what past wakes took here (the ledger keeps them across restarts)
        self.wake = WakeRecord.remembering(ledger.read(ledger_file) if ledger_file else [])
        self.belief = Readiness()
        self.config, self.loop, self.sender = config, loop, sender
        self.on_change = on_change  # the status line may have changed
        self.on_close = on_close  # one client's connection is over
        self.probe = probe or (lambda: probes.probe(config, connect=WAKE_CONNECT_TIMEOUT))
        self.quick_probe = probe or (lambda: probes.probe(config, QUICK_PROBE_TIMEOUT,
                                                          QUICK_PROBE_TIMEOUT))
        self.prober = Prober(loop)
        self.refreshing = False  # a background probe is in flight
        self.sockaddr: tuple | None = None
        self.family = socket.AF_INET
        self.waiting = WaitingRoom(loop, hung_up=self._hung_up, expired=self._give_up)
        self.waiters: list[Waiter] = []
        self.prewakes: set[asyncio.Task[bool]] = set()
        self.probe_now = asyncio.Event()  # a "ready" hint: the wake loop probes at once
        self.connector = Connector(loop, address=lambda: (self.family, self.sockaddr),
                                   refused=self._connect_refused, lost=self._backend_lost,
                                   closed=on_close)
        self.schedule = WakeSchedule(config.wol_interval)
        self.wake_task: asyncio.Task[None] | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.cache = cache or AnswerCache(f"http://{config.backend}",
                                          config.answer_while_asleep or (), None, config.kind)
        self.on_cpu = ""  # the server that said, in its "ready" hint, that it runs on the CPU
        self.progress = Progress(loop, config, Waker(
            ready=self.wait_ready, phase=self.wake.phase, packets=lambda: self.wake.signals,
            address=lambda: (self.family, self.sockaddr), on_cpu=lambda: self.on_cpu,
            expectation=self.wake.expectation, wake_timeout=self.wake_timeout),
            closed=on_close)
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
        return self.belief.is_ready(self.loop.time()) and self.sockaddr is not None

    def _believe_ready(self, fill_after: float = 0.0) -> None:
        self.belief.believe_ready(self.loop.time())
        self.wake.answered()
        if self.cache.targets and not self.cache.fetching and self.cache.stale(time.time()):
            self.cache.fetching = True
            self.loop.call_later(fill_after, self._fill_cache)

    def _fill_cache(self) -> None:
        """Fetch the answers to keep from the backend, off every client's path."""

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
        if self.belief.is_asleep(self.loop.time()):
            return "asleep"
        ready, why = await self._look_once()
        if ready:
            log.info("backend %s answered its ready check (%s): passing requests on",
                     self.config.backend, why)
            return "awake"
        self.belief.believe_asleep(self.loop.time())
        log.info("backend %s does not answer (%s): answering from the cache", self.config.backend,
                 why)
        return "asleep"

    async def fill_cache_if_awake(self, ready_hint: bool = False) -> None:
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
        if ready and await self._resolve():
            self._believe_ready()
            return True, why
        return False, why

    def _not_ready(self) -> None:
        self.belief.not_ready()
        self.on_change()

    def _refresh_in_background(self) -> None:
        """Probe again while clients keep coming, so a busy proxy never holds them for it."""
        self.refreshing = True

        def done(result: asyncio.Future[tuple[bool, str]]) -> None:
            self.refreshing = False
            if result.cancelled():
                return
            ready, why = result.result()
            if ready:
                self._believe_ready()
            elif self.ready:
                log.info("backend %s is not ready any more (%s): holding new clients until it is",
                         self.config.backend, why)
                self._not_ready()

        asyncio.ensure_future(self.prober.once(self.probe)).add_done_callback(done)

    # -- one client --------------------------------------------------------------------------

    def serve(self, sock: socket.socket, peer: str, address: str = "") -> None:
        now = self.loop.time()
        if self.ready:
            if self.belief.stale_soon(now) and not self.refreshing:
                self._refresh_in_background()
            self.connector.connect(Client(sock, peer, now, now + self.hold_limit(),
                                          address=address))
        elif self.reads_requests:
            self.reception.receive(Visitor(sock, peer, address))
        else:
            self._hold(Client(sock, peer, now, now + self.hold_limit()))

    def _hold_visitor(self, visitor: Visitor) -> None:
        now = self.loop.time()
        client = Client(visitor.sock, visitor.peer, now, now + self.hold_limit(),
                        prefix=visitor.prefix, request=visitor.request, agent=visitor.agent,
                        address=visitor.address)
        if self.ready:  # woken meanwhile, by another client
            self.connector.connect(client)
        else:
            self._hold(client)

    def _connect_refused(self, client: Client, why: str) -> None:
        if self.ready:
            log.info("backend %s does not answer (%s): it may be asleep", self.config.backend, why)
            self._not_ready()
        self.belief.believe_asleep(self.loop.time(), down=True)
        if self.reads_requests and not client.prefix and not client.request:
            # passed on at once while believed ready, so nothing of it was read: reception reads
            # it now, and a model-list request is answered from the cache, not held for a wake
            self.reception.receive(Visitor(client.sock, client.peer, client.address))
            return
        self._hold(client)

    def _backend_lost(self, error: OSError) -> None:
        if self.ready:
            log.warning("lost the backend %s (%s): the next client will wake it",
                        self.config.backend, error.strerror)
            self._not_ready()

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
        return self.wake.hold_limit(self.loop.time(), self.config.wake_timeout)

    def wake_timeout(self) -> float:
        """wake_timeout, or where it is the default and the box powers off, a cold boot's."""
        return self.wake.wake_timeout(self.config.wake_timeout)

    def busy(self) -> bool:
        """Whether it still holds, answers or splices anyone (a retired one is let finish)."""
        return bool(self.clients_waiting() or self.connector.splices or self.reception.reading
                    or self.progress.tasks or self.wake_task is not None)

    def clients_waiting(self) -> int:
        return len(self.waiting) + len(self.waiters)

    def hinted(self, hint: hints.Hint, sender: str) -> None:
        """A hint from the GPU box (hints.py): it can cause a probe, or mark the backend asleep
        so that the next client starts a wake at once; a spoofed one, nothing worse."""
        if hint.event == "ready":
            if hint.port is not None and hint.port != self.config.backend.port:
                log.debug("hint from %s: %s on port %d is ready, not this backend's (port %d)",
                          sender, hint.name, hint.port, self.config.backend.port)
                return
            self.on_cpu = hint.name if hint.on_cpu else ""
            log.info("hint from %s: %s is ready%s%s", sender, hint.name or "a server",
                     " on the CPU (its GPU did not come back)" if hint.on_cpu else "",
                     "" if self.ready else "; probing now")
            if self.wake_task is not None:
                self.probe_now.set()
            elif not self.ready:
                self.loop.create_task(self.fill_cache_if_awake(ready_hint=True))
        else:
            action = hint.action or sleep_actions.DEFAULT  # a box that does not say suspends
            log.info("hint from %s: the box is going to sleep (%s)", sender, action)
            if action != self.wake.asleep_as:  # kept: a wake after a restart of ours knows it
                self.wake.asleep_as = action
                self.record("box-sleeping", action=action)
            # the next client's wake sends its first packet at once
            self.belief.believe_asleep(self.loop.time(), down=True)
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
        if self.ready:
            return True
        waiter = Waiter(self.loop.create_future(), peer, request, agent)
        self.waiters.append(waiter)
        if self.wake_task is None:
            self.wake_task = self.loop.create_task(self._wake())
        self.on_change()
        started = self.loop.time()
        try:
            async with timeout(self.hold_limit()):
                return await asyncio.shield(waiter.ready)
        except ASYNC_TIMEOUT:
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
        now = self.loop.time()
        waited = now - client.arrived
        # read before this give-up is noted: an attempt that failed before this client came
        hint = "; ".join(part for part in (
            probes.hint(self.wake.last_probe, self.config.backend),
            self.wake.earlier_attempt(now, client.arrived, self.wake_timeout())) if part)
        self._note_give_up(waited)
        self._let_go(client, backend_unavailable(
            str(self.config.backend), round(client.deadline - client.arrived, 1), waited, hint,
            self.wake.retry_after()), "its backend did not wake")
        self.on_change()

    def _let_go(self, client: Client, reply: bytes, why: str) -> None:
        """A held client leaves with `reply` (if it spoke HTTP; else a close), and lingers."""
        try:
            answered = reply_if_http(client, reply)
            log.info("%s %s: %s", "answered with 503" if answered else "closing", client.peer,
                     why)
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            client.sock.close()
            self.on_close()
        else:
            linger(self.loop, client.sock, self.on_close)

    def _nobody_listens(self, refused_for: float) -> None:
        """The box answers, but nothing has listened on the port for longer than its server
        needs: every held client is told so now (a wrong port, a server on 127.0.0.1 only), not
        after wake_timeout and dozens of magic packets. The wake goes on, in case it starts."""
        clients = self.waiting.take_all()
        if not clients and not self.waiters:
            return
        hint = probes.hint("Connection refused", self.config.backend)
        log.warning("%s (refused for %.0f s): answering %d waiting client(s) with 503 now",
                    hint, refused_for, len(clients) + len(self.waiters))
        for client in clients:
            self._let_go(client, nothing_listens(hint, refused_for),
                         "nothing listens on the backend's port")
        for waiter in self.waiters:
            if not waiter.ready.done():
                waiter.ready.set_result(False)
        self.on_change()

    def _note_give_up(self, waited: float) -> None:
        """The journal line and the ledger entry of a wake that gave up: once per wake."""
        if self.wake.give_up(self.loop.time()):
            self.record("wake", **self.wake.first, signals=self.wake.signals,
                        gave_up_after=round(waited, 1))
            hint = probes.hint(self.wake.last_probe, self.config.backend)
            log.warning(
                "backend %s did not wake within %s (%d wake signals sent, last probe: %s)%s",
                self.config.backend, format_duration(round(waited)),
                self.wake.signals, self.wake.last_probe or "none yet", f": {hint}" if hint else "",
            )

    # -- waking -------------------------------------------------------------------------------

    async def _wake(self) -> None:
        """Probe until ready, sending wake signals meanwhile; then connect every held client.

        The first signal waits SEND_GRACE for the first probe, so that a backend that is merely
        unconfirmed (a stale verdict, a fresh proxy) is not sent packets or logged as woken; one
        whose connect just failed is known to be down and gets its first signal at once. A new
        probe starts every PROBE_INTERVAL, and at once on a "ready" hint, whatever the earlier
        ones are doing (prober.py). Once a signal went out the wake runs to ready or to
        wake_timeout even if every client left (a frontend's own timeout on its first look): the
        box is on its way up, and its answers are kept for the next look.
        """
        started, finished = self.loop.time(), False
        self.wake.begin()
        grace = 0.0 if self.belief.take_known_down() else SEND_GRACE
        self.send_timer = self.loop.call_later(grace, self._send_when_due)
        due, ready_answer, left_alone = started, None, False
        try:
            while ready_answer is None:
                if self.loop.time() >= due or self.probe_now.is_set():
                    self.prober.start(self.probe, always=self.probe_now.is_set())
                    self.probe_now.clear()
                    due = self.loop.time() + PROBE_INTERVAL
                for answer in await self.prober.answers(due, self.probe_now):
                    self.wake.probed(answer.why, self.loop.time() - started)
                    if answer.ready and await self._resolve():
                        ready_answer = answer
                        break
                if ready_answer is None and self.wake.refused_too_long(
                        self.loop.time() - started, self.cache.learned or self.config.kind):
                    self._nobody_listens(self.loop.time() - started - (self.wake.refused_since or 0))
                if ready_answer is not None or self.clients_waiting():
                    continue
                elapsed = self.loop.time() - started
                if not self.wake.signals or elapsed >= self.wake_timeout():
                    if self.wake.signals:
                        log.info("stopped waking %s after %.1f s: no client waits any more",
                                 self.config.backend, elapsed)
                        if not self.wake.gave_up:
                            self.record("wake", **self.wake.first, signals=self.wake.signals,
                                        abandoned_after=round(elapsed, 1))
                    return
                if not left_alone:
                    left_alone = True
                    log.info("no client waits for %s any more, but it was sent a wake signal: "
                             "waking on until it is ready (or %s), to keep its answers",
                             self.config.backend, format_duration(self.wake_timeout()))
            self._woken(ready_answer, self.loop.time() - started)
            clients = self.waiting.take_all()
            if self.wake.signals and clients:
                clients[0].on_first_answer = self._first_answer_timer(clients[0].request)
            for client in clients:
                self.connector.connect(client)
            for waiter in self.waiters:
                if not waiter.ready.done():
                    waiter.ready.set_result(True)
            finished = True
        finally:
            self.prober.forget()
            if self.send_timer is not None:
                self.send_timer.cancel()
            self.wake_task = None
            self.wake.started = None
            if finished and self.waiting:
                # held again while the others were connected (a connect failed right after the
                # 200): it needs a wake of its own, not a 503 with nothing probing for it
                self.wake_task = self.loop.create_task(self._wake())
            self.on_change()

    def _woken(self, answer: Answer, took: float) -> None:
        """The backend said ready: log and record the wake, if signals were what woke it."""
        needless = (self.wake.started is not None and self.wake.signals
                    and answer.asked_at < self.wake.started)
        if needless:
            # asked before any signal went out: it was awake all along (a "sleeping" hint that
            # was wrong, or spoofed), and a wake of 0 s must not teach what a wake takes
            log.info("backend %s was awake: it answered a probe sent before the first wake "
                     "signal (%s); not counted as a wake", self.config.backend, answer.why)
        elif self.wake.signals:
            log.info("backend %s ready after %.1f s (%d wake signals sent, %d client(s) waiting)",
                     self.config.backend, took, self.wake.signals, self.clients_waiting())
            self.record("wake", **self.wake.first, **self.wake.origin(),
                        signals=self.wake.signals, ready_after=round(took, 1),
                        **self.wake.phases())
        else:
            log.debug("backend %s confirmed ready (%s)", self.config.backend, answer.why)
        self.wake.ready(took, woken=bool(self.wake.signals) and not needless)
        self._believe_ready(fill_after=CACHE_AFTER_WAKE if self.clients_waiting() else 0.0)

    def _first_answer_timer(self, request: str) -> Callable[[], None]:
        """What a woken box's first answer took after ready: the request's own work (a prompt
        read, a model swapped in), which the wake's time does not show."""
        ready_at = self.loop.time()

        def answered() -> None:
            after = self.loop.time() - ready_at
            log.info("the backend's first answer to %s came %.2f s after ready",
                     request or "the first client", after)
            self.record("first-answer", after_ready=round(after, 2))

        return answered

    def _send_when_due(self) -> None:
        """Send a wake signal now if the schedule allows; re-armed for as long as clients wait."""
        now = self.loop.time()
        # once a signal went out, the wake goes on without clients (see _wake)
        wanted = self.clients_waiting() or self.wake.started is not None
        if wanted and self.schedule.due(now):
            if self.wake.started is None:
                first: Client | Waiter = self.waiting.first() if self.waiting else self.waiters[0]
                self.wake.first_signal(now, first.peer, first.request, first.agent)
                # naming the client tells a person who keeps waking the box (a polling frontend,
                # LiteLLM's background health checks: chats, but for their User-Agent)
                log.info("waking %s with %s: %d client(s) waiting, first %s%s%s (last probe: %s)",
                         self.config.backend, self.sender.describe(), self.clients_waiting(),
                         first.peer, f" {first.request}" if first.request else "",
                         f" (User-Agent: {first.agent})" if first.agent else "",
                         self.wake.last_probe or "none yet")
            if self.sender.send():  # count only what went out
                self.wake.signals += 1
                log.debug("sent %s (%d)", self.sender.describe(), self.wake.signals)
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
            self.wake.last_probe = f"cannot resolve {address.host}: {error}"
            return False
        self.family, _, _, _, self.sockaddr = infos[0]
        return True

    # -- restart and shutdown -----------------------------------------------------------------

    def detach_kept(self) -> tuple[list[Client], list[Splice]]:
        """Held clients and running splices, out of this process's hands, for a restart to go
        on with (handover.py); close_all() then closes only the rest."""
        return self.waiting.take_all(), self.connector.detach()

    def adopt(self, held: list[Client],
              splices: list[tuple[socket.socket, socket.socket, tuple[PumpState, PumpState]]]
              ) -> None:
        """Go on with what the process before a restart held and spliced."""
        for client_sock, backend_sock, pumps in splices:
            self.connector.adopt(client_sock, backend_sock, pumps)
        for client in held:
            self._hold(client)  # the wake loop looks first: an awake backend gets no packet

    def release(self) -> None:
        """A backend retired by a reload, holding nobody any more: the fds it kept for its
        clients (the hang-up watcher) and its wake sender go."""
        self.waiting.hangups.close()
        self.prober.close()
        self.sender.close()

    def close_all(self) -> None:
        self.reception.close_all()
        self.progress.close_all()
        for task in list(self.prewakes):
            task.cancel()
        for client in self.waiting.take_all():
            client.sock.close()
        self.connector.close_all()
        if self.wake_task is not None:
            self.wake_task.cancel()
        self.prober.close()
        self.sender.close()
