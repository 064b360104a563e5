"""Is the backend up, and who waits for it: the only place the proxy answers either.

What the proxy believes of the backend (readiness.py) and the record of the current wake
(wake_record.py) are pure and kept apart; this is the I/O around them. Clients wait here
(waiting.py): held unread, or in a task of their own (a stream with progress, a pre-wake)
through wait_ready(). While anyone waits the wake loop probes readiness and, unless the first
probe succeeds at once, sends wake signals (pacer.py). Once ready, the held clients leave by the
one way out, `connect`, in arrival order. Outside a wake, look() asks once, quickly, for a
request that could be answered from the cache, and confirm_soon() keeps a ready verdict fresh
while clients keep coming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sleepyllama import hints, ledger, sleep_actions
from sleepyllama.config import ProxyConfig
from sleepyllama.live_state import State
from sleepyllama.proxy import probe as probes
from sleepyllama.proxy.belief import Belief
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.client import Asker, Client
from sleepyllama.proxy.pacer import Pacer
from sleepyllama.proxy.prober import Answer, Probe, Prober
from sleepyllama.proxy.waiting import Waiting
from sleepyllama.proxy.wake_context import WakeContext
from sleepyllama.proxy.wake_record import WakeRecord
from sleepyllama.proxy.wake_state import Happening
from sleepyllama.proxy.wol import WakeSender
from sleepyllama.words import format_duration

log = logging.getLogger(__name__)

PROBE_INTERVAL = 0.1  # readiness probes while waking: the wake-to-first-byte lag is about half this
# a LAN answers a connect in a millisecond; a box that drops packets (asleep) holds a probe for
# this long, and the next probes do not wait for it (prober.py)
WAKE_CONNECT_TIMEOUT = 0.5
# a woken box's answers are kept this long after ready: the fetch's requests (and the thread
# that makes them) would otherwise compete with the held clients' own, to the box and for the GIL
CACHE_AFTER_WAKE = 1.0


@dataclass(frozen=True)
class View:
    """What the wake is now, as STATUS, live.json, a stream's progress and the page follow it:
    the state (wake_state.py moves it), and what else a person is shown, in one place."""
    state: str  # one of live_state.STATES
    since: float  # loop time the state began
    ready: bool  # believed ready now (a 200 within READY_TRUST): clients are connected at once
    waking_since: float | None  # loop time of the first signal of the wake under way
    signals: int  # sent in the wake under way
    clients: int  # waiting on a socket
    phase: str  # of the wake under way: "waking", "refused" (up, nothing listens), "loading"
    typical_wake: float | None  # the median of the last wakes from the way the box sleeps
    asleep_as: str  # how the box said it sleeps; "": it never said
    last_ready: float | None  # loop time the backend last answered its ready check


class Wake:
    def __init__(
        self,
        config: ProxyConfig,
        loop: asyncio.AbstractEventLoop,
        sender: WakeSender,
        cache: AnswerCache,
        *,
        connect: Callable[[Client], None],  # the way out: a held client, the backend ready
        changed: Callable[[], None] = lambda: None,  # what is shown changed (wake_state.py)
        closed: Callable[[], None] = lambda: None,  # one client's connection is over
        probe: Probe | None = None,
        ledger_file: Path | None = None,  # this proxy's record of wakes (ledger.py), if any
    ) -> None:
        self.config, self.loop, self.cache = config, loop, cache
        self.connect, self.closed = connect, closed
        self.ledger_file = ledger_file
        # what past wakes took here (the ledger keeps them across restarts)
        self.record = WakeRecord.remembering(ledger.read(ledger_file) if ledger_file else [])
        self.tell, self.telling, self.closing = changed, False, False
        # what every part shares, handed to each once
        context = WakeContext.built(config, loop, self.record, changed=self._tell_soon,
                                    to_ledger=self.to_ledger, closed=closed)
        self.changes = context.state
        self.probe = probe or (lambda: probes.probe(config, connect=WAKE_CONNECT_TIMEOUT))
        self.prober = Prober(loop)
        self.belief = Belief(context, cache, self.prober, probe=self.probe, quick_probe=probe)
        self.waiting = Waiting(context)
        self.pacer = Pacer(context, sender, self.waiting)
        self.wake_timeout = context.wake_timeout
        self.prewakes: set[asyncio.Task[bool]] = set()
        self.probe_now = asyncio.Event()  # a "ready" hint: the wake loop probes at once
        self.task: asyncio.Task[None] | None = None
        self.on_cpu = ""  # the server that said, in its "ready" hint, that it runs on the CPU

    # -- what it is ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.belief.ready

    def clients_waiting(self) -> int:
        return len(self.waiting)

    def clients_shown(self) -> int:
        """Clients waiting on a socket, as STATUS, the page and the metrics count them."""
        return self.waiting.on_sockets()

    def under_way(self) -> bool:
        """A wake loop runs: it probes, and sends signals unless the box answers at once.
        (The state is "waking" only once a signal went out: before, the box may be up.)"""
        return self.task is not None

    def busy(self) -> bool:
        return bool(self.clients_waiting() or self.under_way())

    def state(self) -> str:
        """One word for everyone who shows it (live_state.STATES), as wake_state.py's table
        moved it."""
        return self.changes.state.value

    def _tell_soon(self) -> None:
        """What is shown changed: told once the running callback is done (a wake connects its
        held clients before STATUS and live.json are written), and once for many changes."""
        if not self.telling:
            self.telling = True
            self.loop.call_soon(self._tell)

    def _tell(self) -> None:
        self.telling = False
        if not self.closing:  # stopped: what the program wrote last stands
            self.tell()

    def changed(self) -> None:
        """Something shown of this backend changed outside the wake (a client read, or gone)."""
        self.changes.shown()

    def view(self) -> View:
        typical = self.record.typical()
        waking = self.record.started is not None
        return View(self.state(), self.changes.since, self.ready, self.record.started,
                    self.record.signals if waking else 0,
                    self.clients_shown(), self.record.phase(),
                    round(typical[0], 1) if typical else None, self.record.asleep_as,
                    self.belief.readiness.last_ready)

    def expectation(self) -> str:
        """What the box does while it wakes, and what that usually takes here (for a person)."""
        return self.record.expectation()

    def to_ledger(self, entry: ledger.Entry) -> None:
        if self.ledger_file is not None:
            ledger.append(self.ledger_file, entry)

    # -- what it tells ----------------------------------------------------------------------

    async def look(self) -> str:
        """"awake", "waking" or "asleep", asked before a look-only request is answered from the
        cache (belief.py: one quick probe where the verdict is only stale)."""
        if self.ready:
            return "awake"
        if self.under_way():
            return "waking"
        return await self.belief.look()

    # -- what the belief is told, and asked, from outside a wake --------------------------------

    def address(self) -> tuple[int, tuple]:
        """Where to connect to the backend (its name resolved once, kept while it answers)."""
        return self.belief.address()

    def confirm_soon(self) -> None:
        """A client goes to a backend believed ready: keep the verdict fresh."""
        self.belief.confirm_soon()

    def connect_failed(self, why: str) -> None:
        self.belief.connect_failed(why)

    def lost(self, error: OSError) -> None:
        """The backend's host is gone (no route, a name that no longer resolves)."""
        self.belief.lost(error)

    def watch(self) -> None:
        """Nobody uses the box: a look now and then at one that slept or woke without a word."""
        self.belief.watch()

    def look_in_background(self, ready_hint: bool = False) -> None:
        """A look at the backend, and its answers kept if it is awake (at start, after a reload)."""
        self.loop.create_task(self.belief.keep_answers_if_awake(ready_hint=ready_hint))

    def take_over(self, before: Wake) -> None:
        """A reload for the same box: what was known of it still holds."""
        self.belief.take_over(before.belief)

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
            if self.under_way():
                self.probe_now.set()
            elif not self.ready:
                self.look_in_background(ready_hint=True)
        elif hint.event == "sleeping":
            action = hint.action or sleep_actions.DEFAULT  # a box that does not say suspends
            log.info("hint from %s: the box is going to sleep (%s)", sender, action)
            # kept: a wake after a restart of ours knows it, and the page draws the sleep; once
            # per sleep (a flood of the same datagram is one line)
            if action != self.record.asleep_as or self.changes.evidence is not State.ASLEEP:
                self.record.asleep_as = action
                self.record.sleep_open = True
                self.to_ledger(ledger.BoxSleeping(action=action, saving_watts=hint.saving_watts))
            self.belief.going_to_sleep()

    # -- who waits ----------------------------------------------------------------------------

    def hold(self, client: Client) -> None:
        """Hold a client, unread, until the backend is ready (then `connect`) or wake_timeout."""
        self.waiting.hold(client)
        self._start()

    async def wait_ready(self, client: Client | Asker) -> bool:
        """Wake the backend for a client that waits in a task of its own; True once it is ready,
        False when it did not wake within wake_timeout."""
        if self.ready:
            return True
        self._start()
        return await self.waiting.wait(client)

    def prewake(self, client: Client, request: str) -> None:
        """Start a wake in the background for a request that only looks (prewake_on): the box
        comes up while the user types."""
        if self.ready or self.under_way():
            return
        log.info("pre-wake of %s: %s from %s", self.config.backend, request, client.peer)
        self.in_background(Asker(client.peer, f"{request} (pre-wake)", client.agent))

    def in_background(self, asker: Asker) -> None:
        """A wake that nobody waits for on a socket (a pre-wake, the page's Wake button): it
        runs its course as any other, and says who asked in the journal and the ledger."""
        task = self.loop.create_task(self.wait_ready(asker))
        self.prewakes.add(task)
        task.add_done_callback(self.prewakes.discard)

    def asked(self, who: str) -> None:
        """Someone asked for the box on this host (the page's Wake button, through a local
        datagram): a wake unless it is awake or waking already."""
        if self.ready or self.under_way():
            log.info("%s asked to wake %s: it is %s already", who, self.config.backend,
                     "awake" if self.ready else "waking")
            return
        log.info("waking %s: %s asked", self.config.backend, who)
        self.in_background(Asker(who, "Wake button"))

    # -- waking -------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.task is None:
            self.task = self.loop.create_task(self._wake())

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
        self.record.begin()
        self.pacer.start(at_once=self.belief.readiness.take_known_down())
        try:
            answer = await self._probe_until_ready(started)
            if answer is None:
                return
            self._woken(answer, self.loop.time() - started)
            clients = self.waiting.ready()
            if self.record.signals and clients:
                clients[0].on_first_answer = self._first_answer_timer(clients[0].request)
            for client in clients:
                self.connect(client)
            finished = True
        finally:
            self.prober.forget()
            self.pacer.stop()
            self.task = None
            self.record.started = None
            if finished and self.waiting.room:
                # held again while the others were connected (a connect failed right after the
                # 200): it needs a wake of its own, not a 503 with nothing probing for it
                self._start()
            self.changes.happen(Happening.WOKE if self.ready else Happening.GAVE_UP
                                if self.record.gave_up else Happening.ABANDONED)

    async def _probe_until_ready(self, started: float) -> Answer | None:
        """The first "ready" answer; None once nobody waits and the wake may end."""
        due, left_alone = started, False
        while True:
            if self.loop.time() >= due or self.probe_now.is_set():
                self.prober.start(self.probe, always=self.probe_now.is_set())
                self.probe_now.clear()
                due = self.loop.time() + PROBE_INTERVAL
            for answer in await self.prober.answers(due, self.probe_now):
                self.record.probed(answer.why, self.loop.time() - started)
                if answer.ready and await self.belief.resolve():
                    return answer
            elapsed = self.loop.time() - started
            if self.record.refused_too_long(elapsed, self.cache.learned or self.config.kind):
                self.waiting.nobody_listens(elapsed - (self.record.refused_since or 0))
            if self.clients_waiting():
                continue
            if not self.record.signals or elapsed >= self.wake_timeout():
                if self.record.signals:
                    log.info("stopped waking %s after %.1f s: no client waits any more",
                             self.config.backend, elapsed)
                    if not self.record.gave_up:
                        self.to_ledger(ledger.Wake(**self.record.first,
                                                   signals=self.record.signals,
                                                   abandoned_after=round(elapsed, 1)))
                return None
            if not left_alone:
                left_alone = True
                log.info("no client waits for %s any more, but it was sent a wake signal: "
                         "waking on until it is ready (or %s), to keep its answers",
                         self.config.backend, format_duration(self.wake_timeout()))

    def _woken(self, answer: Answer, took: float) -> None:
        """The backend said ready: log and record the wake, if signals were what woke it."""
        needless = (self.record.started is not None and self.record.signals
                    and answer.asked_at < self.record.started)
        if needless:
            # asked before any signal went out: it was awake all along (a "sleeping" hint that
            # was wrong, or spoofed), and a wake of 0 s must not teach what a wake takes
            log.info("backend %s was awake: it answered a probe sent before the first wake "
                     "signal (%s); not counted as a wake", self.config.backend, answer.why)
        elif self.record.signals:
            log.info("backend %s ready after %.1f s (%d wake signals sent, %d client(s) waiting)",
                     self.config.backend, took, self.record.signals, self.clients_waiting())
            self.to_ledger(ledger.Wake(**self.record.first, **self.record.origin(),
                                       signals=self.record.signals, ready_after=round(took, 1),
                                       **self.record.phases()))
        else:
            log.debug("backend %s confirmed ready (%s)", self.config.backend, answer.why)
        self.record.ready(took, woken=bool(self.record.signals) and not needless)
        self.belief.believe_ready(fill_after=CACHE_AFTER_WAKE if self.clients_waiting() else 0.0)

    def _first_answer_timer(self, request: str) -> Callable[[], None]:
        """What a woken box's first answer took after ready: the request's own work (a prompt
        read, a model swapped in), which the wake's time does not show."""
        ready_at = self.loop.time()

        def answered() -> None:
            after = self.loop.time() - ready_at
            log.info("the backend's first answer to %s came %.2f s after ready",
                     request or "the first client", after)
            self.to_ledger(ledger.FirstAnswer(after_ready=round(after, 2)))

        return answered

    # -- restart and shutdown -----------------------------------------------------------------

    def take_held(self) -> list[Client]:
        """The held clients, out of this process's hands, for a restart (handover.py)."""
        return self.waiting.take_held()

    def release(self) -> None:
        """Retired by a reload and waited for by nobody: the fds it kept go."""
        self.waiting.room.hangups.close()
        self.prober.close()
        self.pacer.close()

    def close(self) -> None:
        self.closing = True
        for task in list(self.prewakes):
            task.cancel()
        self.waiting.close()
        if self.task is not None:
            self.task.cancel()
        self.prober.close()
        self.pacer.close()
