"""sleepyllama-proxy: a socket-activated TCP proxy that wakes its backend with Wake-on-LAN.

Serves one [proxy.NAME] table. Takes its listening sockets from systemd (LISTEN_FDS), or from
--listen when run by hand; the backend logic lives in backend.py, the data path in splice.py.
A config error stops a proxy run by hand (exit 78); a socket-activated one answers 503 naming
the error until the file is fixed (misconfigured.py), so that its port never dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import resource
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from sleepyllama import config as configuration
from sleepyllama import hints, logs, systemd
from sleepyllama.command_line import listen_address, program_parser
from sleepyllama.config import ConfigError, ProxyConfig
from sleepyllama.proxy import api_key, handover
from sleepyllama.proxy.backend import Backend
from sleepyllama.proxy.cache import AnswerCache
from sleepyllama.proxy.live import LiveFile
from sleepyllama.proxy.misconfigured import Misconfigured
from sleepyllama.proxy.splice import SPARE_PIPES
from sleepyllama.proxy.wol import make_sender
from sleepyllama.rejections import Rejections
from sleepyllama.words import count, format_duration

log = logging.getLogger("sleepyllama-proxy")

EX_USAGE, EX_UNAVAILABLE = 64, 69
ACCEPT_BATCH = 64  # connections accepted per wake-up before other work gets a turn
FULL_WARNING_EVERY = 10.0  # seconds between "too many connections" warnings


class Proxy:
    def __init__(
        self,
        config: ProxyConfig,
        listeners: list[socket.socket],
        loop: asyncio.AbstractEventLoop,
        notifier: systemd.Notifier,
        *,
        exit_when_idle: bool,
        hint_sockets: list[socket.socket] | None = None,
    ) -> None:
        self.config, self.listeners, self.loop, self.notifier = config, listeners, loop, notifier
        self.hint_sockets = hint_sockets or []  # UDP on the same port: the GPU box's hints
        self.hint_limits = hints.SenderLimits()
        self.hint_rejections = Rejections(log, "datagram(s) on the hint port")
        self.backend = self._backend(config)
        self.retired: list[Backend] = []  # of earlier configs: they finish what they hold
        self.reload_error = ""  # the last reload's config error, said in STATUS until fixed
        self.connections = 0
        self.stopped = asyncio.Event()
        self.exit_when_idle = exit_when_idle
        self.exit_idle = config.exit_idle if exit_when_idle else None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.last_full_warning = -FULL_WARNING_EVERY
        self.refused = 0  # since the last "too many connections" warning
        self.live = LiveFile(state_file(config, "live.json"))  # for the page
        self.open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.connection_limit = self.max_connections()  # asked at every accept: worked out once

    def _backend(self, config: ProxyConfig) -> Backend:
        key = api_key.read(config)
        return Backend(config, self.loop, make_sender(config),
                       on_change=self.refresh_status, on_close=self._closed,
                       cache=AnswerCache(f"http://{config.backend}", config.answer_while_asleep or (),
                                         cache_path(config), config.kind, key),
                       ledger_file=state_file(config, "ledger.jsonl"), key=key)

    def reload(self, load: Callable[[], ProxyConfig]) -> None:
        """SIGHUP (systemctl reload, sleepyllama restart): the config read anew, for new
        clients. Those held, answered or spliced stay with the backend of the config they
        came under, until they are done: an edit of the config drops nothing. A config with
        an error is not taken: the proxy serves on as it was, and says why."""
        try:
            config = load()
        except ConfigError as error:
            log.error("not reloaded, serving on as before: %s", error)
            self.reload_error = str(error)
            self.refresh_status()
            return
        self.reload_error = ""
        if config == self.config:
            log.info("config reloaded: nothing changed for [proxy.%s]", config.name)
            return
        for done in [old for old in self.retired if not old.busy()]:
            done.release()
        previous = self.backend
        self.retired = [old for old in self.retired if old.busy()] + [previous]
        self.config, self.backend = config, self._backend(config)
        self.connection_limit = self.max_connections()
        self.exit_idle = config.exit_idle if self.exit_when_idle else None
        if config.backend == previous.config.backend:
            # the same box: what was known of it still holds (an awake box must not read as
            # asleep until the next client), and a look confirms it, as at start
            self.backend.wake.take_over(previous.wake)
            self.backend.prewaker.take_over(previous.prewaker)
        self.backend.wake.look_in_background(ready_hint=True)
        log.info("config reloaded: new clients go to %s; %d connection(s) stay as they were",
                 config.backend, self.connections)
        self.refresh_status()

    def start(self) -> None:
        if self.max_connections() < self.config.max_connections:
            log.warning("max_connections = %d, but this process may open %d files (%d a "
                        "connection): it takes %d connections at once. Raise LimitNOFILE= in a "
                        "drop-in (systemctl edit sleepyllama-proxy@%s), or lower max_connections",
                        self.config.max_connections, self.open_files, FDS_PER_CONNECTION,
                        self.max_connections(), self.config.name)
        for listener in self.listeners:
            listener.setblocking(False)
            self.loop.add_reader(listener.fileno(), self._accept, listener)
        for hint_socket in self.hint_sockets:
            hint_socket.setblocking(False)
            self.loop.add_reader(hint_socket.fileno(), self._hint, hint_socket)
        self._arm_idle_exit()
        self._tick_status()
        self.notifier.ready(self.status_line())
        log.info("serving %s on %s; backend %s, wakes with %s", self.config.name,
                 ", ".join(describe(listener) for listener in self.listeners),
                 self.config.backend, self.backend.sender.describe())
        # a new install's first page load while the box sleeps should already find its answers
        self.backend.wake.look_in_background()

    def _hint(self, hint_socket: socket.socket) -> None:
        """Datagrams from the GPU box: read all that came; act on at most one a second of
        each sender's (hints.SenderLimits), and on every wake request of this host's page."""
        for _ in range(ACCEPT_BATCH):
            try:
                datagram, sender = hint_socket.recvfrom(hints.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.debug("reading a hint failed: %s", error.strerror)
                return
            hint = hints.decode(datagram)
            host = str(sender[0]) if isinstance(sender, tuple) else ""
            if hint is None:
                self.hint_rejections.note("not a hint", peer_name(sender))
            elif hint.event == "wake" and not self._from_this_host(host, hint_socket):
                self.hint_rejections.note("a wake request from afar (only this host's page "
                                          "may send one)", peer_name(sender))
            elif hint.event == "wake":  # the page's own: never dropped for another's flood
                self.backend.wake.asked(f"the page for {hint.name}" if hint.name else "the page")
            elif not self.hint_limits.allow(host, self.loop.time()):
                self.hint_rejections.note("too many hints", peer_name(sender))
            else:
                self.backend.wake.hinted(hint, peer_name(sender))

    @staticmethod
    def _from_this_host(host: str, hint_socket: socket.socket) -> bool:
        """The page's Wake button (sleepyllama-web on this host) asks from this host only. A
        datagram from elsewhere with a local source address is dropped by the kernel (a
        martian), so the address is enough; the page checked wake_from itself."""
        return bool(host) and (is_loopback(host) or host == hint_socket.getsockname()[0])

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # the connection stays queued; try again shortly instead of spinning
                    log.warning("cannot accept: %s; pausing accepts for 0.5 s", error.strerror)
                    self.loop.remove_reader(listener.fileno())
                    self.loop.call_later(0.5, self.loop.add_reader, listener.fileno(),
                                         self._accept, listener)
                else:
                    log.warning("accept failed: %s", error.strerror)
                return
            if self.connections >= self.connection_limit:
                self._refuse(client)
                continue
            self.connections += 1
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
            client.setblocking(False)
            if client.family != socket.AF_UNIX:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.backend.serve(client, peer_name(address),
                               address[0] if isinstance(address, tuple) else "")

    def _refuse(self, client: socket.socket) -> None:
        client.close()
        self.refused += 1
        now = self.loop.time()
        if now - self.last_full_warning >= FULL_WARNING_EVERY:
            log.warning("max_connections (%d) reached: closed %d new connection(s)",
                        self.max_connections(), self.refused)
            self.last_full_warning, self.refused = now, 0

    def max_connections(self) -> int:
        return connections_within(self.config.max_connections, self.open_files)

    def _closed(self) -> None:
        self.connections -= 1
        if self.connections == 0:
            self._arm_idle_exit()

    def _arm_idle_exit(self) -> None:
        if self.exit_idle is not None and self.idle_timer is None:
            self.idle_timer = self.loop.call_later(self.exit_idle, self._idle_exit)

    def _idle_exit(self) -> None:
        log.info("no connection for %s: exiting; systemd starts the proxy again on the next one",
                 format_duration(self.exit_idle or 0))
        self.stop()

    def adopt(self, taken: handover.Taken) -> None:
        """What the process before a restart held and spliced: served on, and counted."""
        self.connections += len(taken.held) + len(taken.splices)
        self.backend.adopt(taken.held, taken.splices)

    def stop(self) -> None:
        self.notifier.stopping("stopping")
        for listener in self.listeners:
            self.loop.remove_reader(listener.fileno())
        backends = (*self.retired, self.backend)
        if handover.room():  # under systemd with an fd store: a restart goes on with them
            kept = [backend.detach_kept() for backend in backends]
            held = [client for clients, _ in kept for client in clients]
            splices = [splice for _, spliced in kept for splice in spliced]
            handover.hand_over(held, splices, self.notifier)
            for client in held:
                client.sock.close()  # the store holds its own copy of those it took
            for splice in splices:
                splice.close()  # those that did not fit; a frozen one is left to the exit
        for backend in backends:
            backend.close_all()
        self.hint_rejections.flush()
        self._write_live(running=False)
        self.stopped.set()

    # -- status -------------------------------------------------------------------------------

    def status_line(self) -> str:
        backend, view = self.backend, self.backend.wake.view()
        if view.state == "waking" and view.waking_since is not None:
            waited = self.loop.time() - view.waking_since
            return (f"waking {self.config.backend.host} · {waited:.0f} s · "
                    f"{count(view.signals, 'packets')} · {count(view.clients, 'clients')} waiting")
        cached = (f" · {backend.cache.answered} answered from cache"
                  if backend.cache.answered else "")
        if view.ready:
            return f"backend awake · {count(self.connections, 'connections')}{cached}"
        if view.state == "did-not-wake":
            return f"backend did not wake within {format_duration(backend.wake.wake_timeout())}"
        if view.last_ready is not None:  # trusted no longer, but known to have answered
            ago = format_duration(round(self.loop.time() - view.last_ready))
            return f"backend answered {ago} ago · {count(self.connections, 'connections')}{cached}"
        return f"backend not contacted yet · {count(self.connections, 'connections')}{cached}"

    def refresh_status(self) -> None:
        self._write_live()
        line = self.status_line()
        # kept until a reload takes: a second's tick must not wipe what a user came to read
        self.notifier.status(f"config not reloaded: {self.reload_error} · serving on: {line}"
                             if self.reload_error else line)

    def _write_live(self, running: bool = True) -> None:
        self.live.update(self.config.name, str(self.config.backend),
                         [describe(sock) for sock in self.hint_sockets], self.backend.wake,
                         self.loop.time(), running=running, prewakes=self.backend.prewaker.shown())

    def _tick_status(self) -> None:
        # connection counts change too often to notify on each; once a second is plenty
        self.refresh_status()
        self.hint_rejections.tick()
        self.backend.prewaker.tick()
        if not self.backend.wake.busy() and not self.connections:  # nobody uses the box
            self.backend.wake.watch()
        self.loop.call_later(1.0, self._tick_status)


def state_file(config: ProxyConfig, kind: str) -> Path | None:
    """A file of this proxy's in the unit's StateDirectory= (which outlives exit_idle, restarts
    and reboots): NAME.answers.json, NAME.ledger.jsonl, NAME.live.json; none when run by hand without one."""
    directory = systemd.state_directory()
    return directory / f"{config.name}.{kind}" if directory else None


def cache_path(config: ProxyConfig) -> Path | None:
    return state_file(config, "answers.json")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(listener: socket.socket) -> str:
    name = listener.getsockname()
    if isinstance(name, tuple):
        return f"[{name[0]}]:{name[1]}" if listener.family == socket.AF_INET6 else f"{name[0]}:{name[1]}"
    return str(name)


def peer_name(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) or "local client"


def open_listener(address: configuration.Address) -> socket.socket:
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    listener.bind(sockaddr)
    listener.listen(socket.SOMAXCONN)
    return listener


def open_hint_socket(address: configuration.Address) -> socket.socket:
    """UDP on the listen address, for the GPU box's hints (as ListenDatagram= under systemd)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0]
    hint_socket = socket.socket(family, socket.SOCK_DGRAM)
    hint_socket.bind(sockaddr)
    return hint_socket


FDS_PER_CONNECTION = 6  # two sockets and two pipes
FDS_BESIDES = 2 * SPARE_PIPES + 64  # kept pipes, listeners, the prober's, the journal's


def raise_open_file_limit() -> int:
    """The open-file limit, raised to the hard one: each connection holds FDS_PER_CONNECTION;
    systemd's soft limit is 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connections_within(max_connections: int, open_files: int) -> int:
    """max_connections, or as many as the open-file limit holds: a connection past it would
    fail with "Too many open files" in the middle of its splice, not with a clean 503."""
    return max(1, min(max_connections, (open_files - FDS_BESIDES) // FDS_PER_CONNECTION))


async def serve(load: Callable[[], ProxyConfig], config: ProxyConfig | ConfigError,
                listeners: list[socket.socket], activated: bool,
                stored: dict[str, int] | None = None) -> None:
    """Serve `config`; or, given the config's error, answer 503s until `load` succeeds."""
    loop = asyncio.get_running_loop()
    notifier = systemd.Notifier()
    # the socket unit passes the TCP listener and, on the same port, the UDP one for hints
    streams = [sock for sock in listeners if sock.type == socket.SOCK_STREAM]
    datagrams = [sock for sock in listeners if sock.type == socket.SOCK_DGRAM]
    if isinstance(config, ConfigError):
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        fixed = await Misconfigured(load, config, streams, notifier).wait_for_valid_config(stop)
        if fixed is None:
            return
        config = fixed
    proxy = Proxy(config, streams, loop, notifier, exit_when_idle=activated,
                  hint_sockets=datagrams)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, proxy.stop)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload, load)
    if stored:  # held clients and connections from before a restart (handover.py)
        proxy.adopt(handover.take_back(stored, notifier))
    proxy.start()
    await proxy.stopped.wait()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-proxy",
        "Proxy TCP connections to a backend that may be asleep: hold each client while waking "
        "the backend with Wake-on-LAN, then splice bytes both ways.",
        ["sleepyllama-proxy --instance llama --listen 0.0.0.0:3939",
         "sleepyllama-proxy --config ./sleepyllama.toml --listen [::]:8080",
         "systemctl enable --now sleepyllama-proxy@llama.socket   (the usual way)"],
        verbose="log each client (debug)")
    parser.add_argument("--instance", metavar="NAME",
                        help="which [proxy.NAME] table to serve (default: the only one)")
    parser.add_argument("--check", action="store_true",
                        help="read the config (and the API key) as a start would, say whether it "
                        "is right, and exit: 0, or 78 with the error (the unit's ExecReload= runs "
                        "it first, so that systemctl reload fails on a broken config)")
    parser.add_argument("--listen", metavar="HOST:PORT", type=listen_address, action="append",
                        default=[], help="listen here instead of on sockets from systemd "
                        "(repeatable; IPv6 as [::]:8080)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-proxy", args.verbose)

    def load() -> ProxyConfig:
        config, elsewhere = configuration.load_proxy(args.config, args.instance)
        if elsewhere:  # another table's error is for `check`: this proxy serves on
            log.warning("%s (this proxy's own table is right: it serves on; sleepyllama check "
                        "names what to fix)", elsewhere)
        api_key.read(config)  # a key file that cannot be read is a config error too
        return config

    if args.check:
        try:
            checked = load()
        except ConfigError as error:
            log.error("%s", error)
            return configuration.EX_CONFIG
        log.info("[proxy.%s] in %s is right", checked.name, args.config)
        return 0
    listeners, stored = systemd.inherited_fds()
    activated = bool(listeners)

    config: ProxyConfig | ConfigError
    try:
        config = load()
    except ConfigError as error:
        if not activated:  # run by hand: say it and stop; under systemd, misconfigured.py
            log.error("%s", error)
            return configuration.EX_CONFIG
        config = error
    try:
        listeners += [open_listener(address) for address in args.listen]
        listeners += [open_hint_socket(address) for address in args.listen]
    except OSError as error:
        log.error("cannot listen on %s: %s", ", ".join(map(str, args.listen)), error.strerror)
        return EX_UNAVAILABLE
    if not listeners:
        name = config.name if isinstance(config, ProxyConfig) else (args.instance or "NAME")
        log.error("no socket to listen on: start me through sleepyllama-proxy@%s.socket "
                  "(systemd socket activation) or pass --listen HOST:PORT", name)
        return EX_USAGE
    raise_open_file_limit()
    asyncio.run(serve(load, config, listeners, activated, stored))
    return 0


if __name__ == "__main__":
    sys.exit(main())
