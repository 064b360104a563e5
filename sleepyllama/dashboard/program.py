"""sleepyllama-web: the page, its JSON and its Prometheus metrics, for every proxy on this host,
and for this host itself where it is a GPU box (a [server.*] table in its config).

  GET  /             the page (dashboard/page.py)
  GET  /api/status   the proxies' boxes as JSON
  GET  /api/box      this GPU box as JSON (dashboard/own_box.py); 404 on a host that is not one
  GET  /metrics      Prometheus text exposition (dashboard/metrics.py)
  POST /wake         proxy=NAME: the Wake button
  POST /stay-awake   proxy=NAME&hours=N: keep the GPU box up (the way back: steer.py); a
                     sleeping box is woken first; box=NAME&hours=N: this box, through its
                     own steering socket
  POST /stay-awake-cancel   proxy=NAME, or box=NAME: the stay-awake ends
  POST /sleep-now    proxy=NAME, or box=NAME: the box sleeps unless its own verdict says busy

Every POST from a form is answered with a redirect to the page (which says what came of it),
so that a reload sends nothing again.

It reads what the proxies keep in their StateDirectory (dashboard/boxes.py) and changes nothing
there. It answers only requests made to a name it is reached by (this host's own names, the
address the browser connected to, [web] names): a site whose name is made to point here (DNS
rebinding) gets nothing, not even a GET. The Wake button is no stronger than a client: it is
offered, and taken, only where the proxy's wake_from allows the browser's address, and only
from the page's own origin; the proxy then wakes the box as for any client, on a datagram it
takes from this host alone (hints.py). A GPU box's own Stay awake and Sleep now are taken from
the browsers [web] steer_from allows.
Socket-activated under systemd (sleepyllama-web.socket); by hand, on --listen.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from sleepyllama import addresses, hints, history, logs, steer, systemd
from sleepyllama import config as configuration
from sleepyllama.command_line import listen_address, program_parser
from sleepyllama.config import ConfigError, ProxyConfig, SteerConfig
from sleepyllama.dashboard import boxes, metrics, mqtt, own_box, page
from sleepyllama.dashboard.steered import Steered
from sleepyllama.host import state
from sleepyllama.words import format_duration

log = logging.getLogger("sleepyllama-web")

MAX_FORM = 1024  # proxy=NAME is a few bytes
MAX_SAID = 300  # what a box answered, carried to the page after a press
REQUEST_TIMEOUT = 10.0  # a client that trickles its request is let go
MAX_CLIENTS = 64  # at once, each a thread; one more is closed at once (the unit allows 512 fds)
WAKE_SEEN_WITHIN = 3.0  # the proxy says "waking" within this, so the page that follows shows it


class Site:
    """What the handlers share: the config (read anew once the file changed: an edit shows at
    the next page load) and where the proxies keep their files."""

    def __init__(self, config_path: Path, directory: Path,
                 box_directory: Path = state.DEFAULT_DIRECTORY) -> None:
        self.config_path, self.directory = config_path, directory
        self.box_directory = box_directory  # where this GPU box's idle unit keeps its state
        self.own_names = own_names()
        self.problems: list[str] = []  # what this page cannot do, shown on it
        self.steered = Steered(directory / "web.steered.json")
        self.read_lock = threading.Lock()  # handlers are threads, and so is Home Assistant's
        self.read: tuple[tuple[int, int, int] | None, configuration.Config | ConfigError] | None = None

    def config(self) -> configuration.Config:
        """The config as the file holds it now: parsed again only when the file changed (its
        time, size or inode: an editor's rename too), not several times a page load and each
        second for Home Assistant. ConfigError while it has an error."""
        try:
            stat = self.config_path.stat()
            seen: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            seen = None  # missing: load() says so, each time
        with self.read_lock:
            if self.read is None or seen is None or self.read[0] != seen:
                try:
                    self.read = (seen, configuration.load(self.config_path))
                except ConfigError as error:
                    self.read = (seen, error)
            found = self.read[1]
        if isinstance(found, ConfigError):
            raise found
        return found

    def web(self) -> configuration.WebConfig:
        try:
            return self.config().web
        except ConfigError:
            return configuration.WebConfig()  # said by proxies()

    def reached_by(self, host: str, local_address: str) -> bool:
        """Whether a request's Host names this page: a name of this host's, one of [web]
        names, or the very address the browser connected to."""
        name = addresses.host_name(host)
        if addresses.ip_of(name) is not None:
            return addresses.same_address(name, local_address) or name in self.web().names
        return name in self.own_names or name in self.web().names

    def gpu_box(self) -> configuration.Config | None:
        """This host's config, where it has a [server.*] table; None elsewhere."""
        try:
            config = self.config()
        except ConfigError:
            return None  # said by proxies()
        return config if config.servers else None

    def own(self) -> own_box.OwnBox | None:
        """This host as a GPU box, from its idle unit's files; None where it is not one."""
        config = self.gpu_box()
        return None if config is None else own_box.read_own_box(config, self.box_directory)

    def proxies(self) -> list[ProxyConfig]:
        return self.proxies_if_readable() or []

    def proxies_if_readable(self) -> list[ProxyConfig] | None:
        """The config's proxies; None while it has an error (said), which is not "none"."""
        try:
            return list(self.config().proxies.values())
        except ConfigError as error:
            log.warning("%s", error)
            return None

    def steer_port(self) -> int:
        try:
            return self.config().steer.port
        except ConfigError:
            return SteerConfig().port

    def boxes(self, proxies: list[ProxyConfig] | None = None) -> list[boxes.Box]:
        found = boxes.read_boxes(self.proxies() if proxies is None else proxies, self.directory)
        for box in found:
            if box.state == "asleep":
                self.steered.over(box.name)  # a stay-awake does not outlive a sleep
            else:
                box.staying_until = self.steered.until(box.name)
        return found

    def wake(self, proxy: ProxyConfig, browser: str) -> tuple[HTTPStatus, str]:
        """Ask the proxy for a wake on behalf of `browser`; the status and why."""
        if not addresses.allowed(proxy.wake_from, browser):
            log.info("refused the Wake button of %s for %s: not in its wake_from", browser,
                     proxy.name)
            return HTTPStatus.FORBIDDEN, "your address may not wake this box (wake_from)"
        return self.ask(proxy, browser.split("%")[0])

    def can_steer(self) -> bool:
        """Whether the page holds the secret it shares with the GPU boxes."""
        try:
            steer.read_secret()
        except (OSError, ValueError):
            return False
        return True

    def steer(self, proxy: ProxyConfig, browser: str, command: str,
              seconds: int = 0) -> tuple[HTTPStatus, str]:
        """A signed command to the GPU box behind `proxy` for `browser`: its status and answer."""
        if not addresses.allowed(proxy.wake_from, browser):
            return HTTPStatus.FORBIDDEN, "your address may not steer this box (wake_from)"
        return self.steer_as(proxy, browser.split("%")[0], command, seconds)

    def steer_as(self, proxy: ProxyConfig, who: str, command: str,
                 seconds: int = 0) -> tuple[HTTPStatus, str]:
        """What is true at once for a box its proxy knows asleep (a command would only wait
        for no answer); a Stay awake wakes it first, as the person pressing it means."""
        if boxes.read_box(proxy, self.directory).state in ("asleep", "did-not-wake"):
            if command == "sleep-now":
                return HTTPStatus.CONFLICT, "it is asleep already"
            if command == "stay-awake-cancel":
                self.steered.over(proxy.name)
                return HTTPStatus.OK, "it is asleep: no stay-awake holds it"
            status, why = self.ask(proxy, who)
            if status != HTTPStatus.SEE_OTHER:
                return HTTPStatus.CONFLICT, why
            threading.Thread(target=self._once_up, args=(proxy, who, command, seconds),
                             name="stay-awake-once-up", daemon=True).start()
            return HTTPStatus.ACCEPTED, (f"it is asleep: waking it; it stays awake for "
                                         f"{format_duration(seconds)} once it is up")
        status, said = self._steer_host(proxy.backend.host, proxy.name, who, command, seconds)
        if status == HTTPStatus.OK and command == "stay-awake":
            self.steered.stay(proxy.name, time.time() + seconds)
        elif status == HTTPStatus.OK:
            self.steered.over(proxy.name)
        return status, said

    def _once_up(self, proxy: ProxyConfig, who: str, command: str, seconds: int) -> None:
        """The command, once the box woken for it is up; given up with its wake."""
        deadline = time.monotonic() + proxy.wake_timeout + WAKE_SEEN_WITHIN
        while time.monotonic() < deadline:
            if boxes.read_box(proxy, self.directory).state == "awake":
                self.steer_as(proxy, who, command, seconds)
                return
            time.sleep(1.0)
        log.warning("%s for %s from %s not sent: the box did not come up", command, proxy.name,
                    who)

    def steer_own(self, browser: str, command: str, seconds: int = 0) -> tuple[HTTPStatus, str]:
        """This box, through its own steering socket, for a browser [web] steer_from allows
        (sleep now still waits for the box's own idle verdict)."""
        if not addresses.allowed(self.web().steer_from, browser):
            log.info("refused %s of %s for this box: not in [web] steer_from", command, browser)
            return HTTPStatus.FORBIDDEN, "your address may not steer this box ([web] steer_from)"
        return self._steer_host("127.0.0.1", "this box", browser.split("%")[0], command, seconds)

    def _steer_host(self, host: str, name: str, who: str, command: str,
                    seconds: int) -> tuple[HTTPStatus, str]:
        try:
            taken, said = steer.send(steer.read_secret(), host, self.steer_port(), command,
                                     seconds, who=who)
        except (OSError, ValueError) as error:
            log.info("%s for %s from %s: %s", command, name, who, error)
            return HTTPStatus.BAD_GATEWAY, str(error)
        log.info("%s for %s from %s: %s", command, name, who, said)
        return (HTTPStatus.OK if taken else HTTPStatus.CONFLICT), said

    def ask(self, proxy: ProxyConfig, who: str) -> tuple[HTTPStatus, str]:
        """Ask the proxy for a wake, naming who asked (a browser's address, "home-assistant"),
        and wait a moment for it to say so."""
        box = boxes.read_box(proxy, self.directory)
        target = hint_target(box.hint_address)
        if target is None:
            return HTTPStatus.CONFLICT, "its proxy has not started yet: it cannot be asked"
        log.info("the Wake button of %s: asking the proxy %s to wake %s", who, proxy.name,
                 proxy.backend)
        hints.send([target], hints.Hint("wake", who))
        deadline = time.monotonic() + WAKE_SEEN_WITHIN
        while time.monotonic() < deadline:  # so that the page shown next says "waking"
            if boxes.read_box(proxy, self.directory).state in ("waking", "awake"):
                break
            time.sleep(0.1)
        return HTTPStatus.SEE_OTHER, "asked"


def same_origin(origin: str, host: str) -> bool:
    """Whether a browser's Origin is the page at Host: one name (as Host names spell it) and
    one port (a Host without one is at its scheme's: behind a reverse proxy, 80 or 443)."""
    try:
        parts = urlsplit(origin)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        host_port = urlsplit(f"//{host}").port
    except ValueError:
        return False
    return (addresses.host_name(parts.netloc) == addresses.host_name(host)
            and (port == host_port if host_port is not None else port in (80, 443)))


def own_names() -> frozenset[str]:
    """The names this host is reached by without a word from its user: its host name, short
    and as DNS has it, NAME.local (mDNS), localhost."""
    host = socket.gethostname().lower()
    short = host.split(".")[0]
    try:
        fqdn = socket.getfqdn().lower()
    except OSError:
        fqdn = host
    return frozenset({host, short, fqdn, f"{short}.local", "localhost"})


def query_of(path: str) -> dict[str, list[str]]:
    """A request's query, bounded; {} for one past the bound (a URL is anyone's to write)."""
    try:
        return parse_qs(urlsplit(path).query, max_num_fields=8)
    except ValueError:
        return {}


def said(path: str) -> tuple[str, str, bool] | None:
    """?to=NAME&said=TEXT&ok=1, as the page after a Stay awake or Sleep now has it: (the box,
    what came of it, whether it was taken); None for anything else."""
    query = query_of(path)
    to, text = (query.get("to") or [""])[0], (query.get("said") or [""])[0]
    if not to or not text:
        return None
    return to[:100], text[:MAX_SAID], (query.get("ok") or [""])[0] == "1"


def pressed(path: str) -> int | None:
    """?pressed=UNIXTIME, as the page after a Wake button has it; None for anything else."""
    value = query_of(path).get("pressed", [""])[0]
    return int(value) if value.isdigit() and len(value) <= 12 else None


def hint_target(address: str) -> configuration.Address | None:
    """Where to send the proxy a datagram from this host: its own address, or loopback where
    it listens on every address."""
    try:
        parsed = configuration.parse_address(address)
    except ValueError:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(parsed.host, parsed.host)
    return configuration.Address(host, parsed.port)


class Handler(BaseHTTPRequestHandler):
    server_version = "sleepyllama-web"
    timeout = REQUEST_TIMEOUT

    def __init__(self, *args: object, site: Site, **kwargs: object) -> None:
        self.site = site
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def browser(self) -> str:
        return str(self.client_address[0]) if isinstance(self.client_address, tuple) else ""

    def do_HEAD(self) -> None:
        """As GET without the body: uptime checkers ask so."""
        self.head_only = True
        self.do_GET()

    def do_GET(self) -> None:
        if not self._reached_by_its_name():
            return
        path = urlsplit(self.path).path
        routes: dict[str, Callable[[], None]] = {"/": self._page, "/api/status": self._status,
                                                 "/api/box": self._own,
                                                 "/metrics": self._metrics}
        route = routes.get(path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
        else:
            route()

    def do_POST(self) -> None:
        if not self._reached_by_its_name():
            return
        path = urlsplit(self.path).path
        if path not in ("/wake", "/stay-awake", "/stay-awake-cancel", "/sleep-now"):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
            return
        if not self._same_origin():
            self._send(HTTPStatus.FORBIDDEN, b"not from this page\n", "text/plain; charset=utf-8")
            return
        form = self._form()
        if "box" in form and path != "/wake":
            self._steer(None, path, form)
            return
        proxies = {proxy.name: proxy for proxy in self.site.proxies()}
        name = (form.get("proxy") or [""])[0]
        if name not in proxies:
            self._send(HTTPStatus.BAD_REQUEST, b"no such proxy\n", "text/plain; charset=utf-8")
            return
        if path != "/wake":
            self._steer(proxies[name], path, form)
            return
        status, why = self.site.wake(proxies[name], self.browser())
        if "application/json" in self.headers.get("Accept", ""):
            self._send(HTTPStatus.OK if status == HTTPStatus.SEE_OTHER else status,
                       json.dumps({"asked": status == HTTPStatus.SEE_OTHER, "why": why}).encode(),
                       "application/json")
        elif status == HTTPStatus.SEE_OTHER:
            self.send_response(status)
            self.send_header("Location", f"/?pressed={int(time.time())}#{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(status, f"{why}\n".encode(), "text/plain; charset=utf-8")

    def _steer(self, proxy: ProxyConfig | None, path: str, form: dict[str, list[str]]) -> None:
        """proxy: the box behind it; None: this box (its own page)."""
        if proxy is None and self.site.gpu_box() is None:
            self._send(HTTPStatus.BAD_REQUEST, b"this host is not a GPU box\n",
                       "text/plain; charset=utf-8")
            return
        command, seconds = ("sleep-now" if path == "/sleep-now" else "stay-awake-cancel"), 0
        if path == "/stay-awake":
            hours = (form.get("hours") or [""])[0]
            if hours not in page.STAY_HOURS:
                self._send(HTTPStatus.BAD_REQUEST, b"hours: one of the page's choices\n",
                           "text/plain; charset=utf-8")
                return
            command, seconds = "stay-awake", int(hours) * 3600
        if proxy is None:
            status, said = self.site.steer_own(self.browser(), command, seconds)
        else:
            status, said = self.site.steer(proxy, self.browser(), command, seconds)
        if "application/json" in self.headers.get("Accept", ""):
            self._send(status, json.dumps({"taken": status in (HTTPStatus.OK,
                                                               HTTPStatus.ACCEPTED),
                                           "said": said}).encode(), "application/json")
            return
        # to the page, which says what came of it: a reload sends nothing again
        name = proxy.name if proxy is not None else "this-box"
        query = urlencode({"to": name, "said": said[:MAX_SAID], "ok": int(status in (
            HTTPStatus.OK, HTTPStatus.ACCEPTED))})
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", f"/?{query}#{quote(name)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- the answers --------------------------------------------------------------------------

    def _page(self) -> None:
        proxies = self.site.proxies()
        allowed = {proxy.name: addresses.allowed(proxy.wake_from, self.browser()) for proxy in proxies}
        html = page.render(self.site.boxes(proxies), allowed, steering=self.site.can_steer(),
                           pressed_at=pressed(self.path), own=self.site.own(),
                           problems=self.site.problems, said=said(self.path))
        self._send(HTTPStatus.OK, html.encode(), "text/html; charset=utf-8")

    def _status(self) -> None:
        proxies = self.site.proxies()
        document = [{**box.as_json(), "may_wake": addresses.allowed(proxy.wake_from, self.browser())}
                    for proxy, box in zip(proxies, self.site.boxes(proxies), strict=True)]
        self._send(HTTPStatus.OK, json.dumps(document).encode(), "application/json")

    def _own(self) -> None:
        own = self.site.own()
        if own is None:
            self._send(HTTPStatus.NOT_FOUND, b"this host is not a GPU box: no [server.*] table\n",
                       "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, json.dumps(own.as_json()).encode(), "application/json")

    def _metrics(self) -> None:
        body, content_type = metrics.exposition(self.site.boxes, self.headers.get("Accept"))
        self._send(HTTPStatus.OK, body, content_type)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                         "form-action 'self'; frame-ancestors 'none'")
        self.end_headers()
        if not getattr(self, "head_only", False):
            self.wfile.write(body)

    def _reached_by_its_name(self) -> bool:
        """Answer only a request made to a name of this page's (see Site.reached_by); a
        client that sends no Host (HTTP/1.0) names none, and is no browser."""
        host = self.headers.get("Host")
        local = self.connection.getsockname()[0] if isinstance(self.connection, socket.socket) \
            else ""
        if host is None or self.site.reached_by(host, str(local)):
            return True
        log.info("refused %s %s from %s: made to %r, not a name of this page's ([web] names)",
                 self.command, urlsplit(self.path).path, self.browser(), host[:80])
        self._send(HTTPStatus.MISDIRECTED_REQUEST,
                   b"this page does not answer to that name: add it to [web] names in "
                   b"/etc/sleepyllama/sleepyllama.toml if it is yours (a reverse proxy)\n",
                   "text/plain; charset=utf-8")
        return False

    def _same_origin(self) -> bool:
        """A browser says where a form came from (Origin); another site's page may not press
        the button. A client that sends no Origin is not a browser on another site's behalf."""
        origin = self.headers.get("Origin")
        if origin is None:
            return self.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
        return same_origin(origin, self.headers.get("Host", ""))

    def _form(self) -> dict[str, list[str]]:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return {}
        if not 0 <= length <= MAX_FORM:
            return {}
        return parse_qs(self.rfile.read(length).decode("ascii", "replace"), max_num_fields=4)


class ActivatedServer(ThreadingHTTPServer):
    """An HTTP server on a socket systemd (or the caller) opened."""

    def __init__(self, sock: socket.socket, handler: Callable[..., Handler]) -> None:
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)

    def process_request(self, request: object, client_address: object) -> None:
        """A thread for each client, up to MAX_CLIENTS: a thousand slow ones must not take
        every thread and file the page has."""
        if not self.clients.acquire(blocking=False):
            log.debug("closed a connection from %s: %d clients at once already",
                      client_address, MAX_CLIENTS)
            self.shutdown_request(request)  # type: ignore[arg-type]
            return
        super().process_request(request, client_address)  # type: ignore[arg-type]

    def process_request_thread(self, request: object, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self.clients.release()


def listening_socket(listen: configuration.Address | None) -> socket.socket:
    inherited, _stored = systemd.inherited_fds()
    streams = [sock for sock in inherited if sock.type == socket.SOCK_STREAM]
    if streams:
        return streams[0]
    if listen is None:
        raise SystemExit("sleepyllama-web: give --listen HOST:PORT (or run it from its socket unit)")
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    return socket.create_server((listen.host, listen.port), family=family, reuse_port=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = program_parser(
        "sleepyllama-web",
        "The page of every proxy on this host: each box's state, its last wake, a Wake button; "
        "GET /api/status (JSON) and GET /metrics (Prometheus). On a GPU box (a [server.*] "
        "table), also the box itself: its idle check's signals, its last days, Stay awake and "
        "Sleep now; GET /api/box.",
        ["sleepyllama-web --listen 0.0.0.0:3940",
         "sleepyllama-web --config ./sleepyllama.toml --listen 127.0.0.1:3940 --state-dir ."])
    parser.add_argument("--listen", type=listen_address, metavar="HOST:PORT",
                        help="where the page listens when run by hand (under systemd: "
                        "sleepyllama-web.socket)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the proxies keep their files (default: $STATE_DIRECTORY, "
                        f"else {history.PROXY_STATE})")
    parser.add_argument("--forget-home-assistant", action="store_true",
                        help="clear every device this page announced to Home Assistant through "
                        "[mqtt] broker, and exit (install.sh --uninstall does)")
    parser.add_argument("--box-state-dir", type=Path, default=state.DEFAULT_DIRECTORY,
                        help="on a GPU box, where its idle unit keeps idle.json and its ledger "
                        "(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("sleepyllama-web", args.verbose)
    directory = args.state_dir or systemd.state_directory() or history.PROXY_STATE
    site = Site(args.config, directory, args.box_state_dir)
    if args.forget_home_assistant:
        return forget_home_assistant(args.config, site)
    sock = listening_socket(args.listen)
    server = ActivatedServer(sock, partial(Handler, site=site))
    server.daemon_threads = True
    log.info("the page of %d proxies on %s (their files in %s)", len(site.proxies()),
             sock.getsockname()[:2], directory)
    publisher = home_assistant(args.config, site, page_url(sock))
    stop_on_signals(server)
    systemd.Notifier().ready()
    try:
        server.serve_forever()
    finally:
        if publisher is not None:
            publisher.stop()
    return 0


def stop_on_signals(server: ThreadingHTTPServer) -> None:
    """SIGTERM and SIGINT end serve_forever, and main() cleans up. Never by raising from the
    handler: one that runs while a finalizer (__del__) does has its exception printed and
    dropped, and the page would serve on until systemd killed it."""
    def stop(_signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever to return: not from this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


def page_url(sock: socket.socket) -> str:
    """Where a person finds the page, for Home Assistant's device page: the address it listens
    on, or this host's name where it listens on every address."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def announced_file(site: Site) -> Path:
    """What the page told Home Assistant, kept beside the proxies' files (its StateDirectory)."""
    return site.directory / "mqtt.announced.json"


def forget_home_assistant(config_path: Path, site: Site) -> int:
    """install.sh --uninstall: every device this page announced is taken off Home Assistant."""
    try:
        settings = configuration.load(config_path).mqtt
        if settings.broker is None:
            print("sleepyllama-web: no [mqtt] broker in the config: nothing to forget")
            return 0
        cleared = mqtt.Publisher(settings, site.proxies_if_readable, site.boxes,
                                 lambda _proxy: "", announced=announced_file(site)).forget()
    except (ConfigError, mqtt.Unusable, OSError) as error:
        print(f"sleepyllama-web: cannot tell Home Assistant to forget the boxes: {error}",
              file=sys.stderr)
        return 1
    print(f"sleepyllama-web: cleared {cleared} retained topic(s) at {settings.broker}: Home "
          "Assistant forgets the boxes")
    return 0


def home_assistant(config_path: Path, site: Site, url: str = "") -> mqtt.Publisher | None:
    """[mqtt]: Home Assistant's view, read from the config once (a change needs a restart)."""
    try:
        settings = configuration.load(config_path).mqtt
    except ConfigError:
        return None  # said by the page's own load

    def wake(proxy: ProxyConfig) -> str:
        status, why = site.ask(proxy, "home-assistant")
        return "asked its proxy to wake it" if status == HTTPStatus.SEE_OTHER else why

    def steer_box(proxy: ProxyConfig, command: str, seconds: int) -> str:
        return site.steer_as(proxy, "home-assistant", command, seconds)[1]

    try:
        return mqtt.start(settings, site.proxies_if_readable, site.boxes, wake,
                          steer_box if site.can_steer() else None, announced_file(site), url)
    except mqtt.Unusable as error:
        site.problems.append(f"Home Assistant: not connected: {error}")
        log.error("not publishing to Home Assistant: %s", error)
        return None


if __name__ == "__main__":
    raise SystemExit(main())
