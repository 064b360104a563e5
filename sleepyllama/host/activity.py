"""What a model server can tell about its use, read without waking it.

One activity source per kind of server. Each look answers, from endpoints that never load a
model, three questions: is a request in flight now, how far has a work counter moved (so that a
request that came and went between two idle checks still counts), and is the model unloaded (a
server with nothing in memory has nothing to keep the box up for).

  kind          in flight                 work counter                     unloaded
  llama-server  /metrics requests_*       /metrics tokens (with --metrics) /props is_sleeping
                (fallback: /slots, only while awake: reading it wakes the model)
  llama-swap    cannot tell               /api/metrics/activity newest id  /running: none ready
  ollama        cannot tell               /api/ps expires_at (moves as each request ends)
                                                                            /api/ps: none loaded
  none          cannot tell               none                             cannot tell

Parsing is pure (tests feed captured output); judge() turns a look and the previous counter into
a verdict with its human reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from sleepyllama import web
from sleepyllama.config import ServerConfig, format_duration


class Unreadable(Exception):
    """The server answered, but not so that its activity can be read: counted busy."""


@dataclass(frozen=True)
class Look:
    running: bool = True
    loading: bool = False
    unloaded: str = ""  # why there is no model in memory ("" while one is loaded)
    in_flight: int | None = None  # None: this kind cannot tell
    work: int | str | None = None  # moves with every request; None: no counter
    work_unit: str = "requests"
    epoch: str = ""  # changes when the counter starts again (a restarted process)


@dataclass(frozen=True)
class Counter:
    """A work counter as seen at one idle check, kept in the state file for the next one."""

    work: int | str
    epoch: str
    at: float  # wall-clock seconds


def moved(before: Counter | None, look: Look) -> int | bool:
    """How far the counter moved since `before`: a count, or True when it moved by an amount
    it cannot tell (a fingerprint changed); 0 or False when it did not move."""
    if before is None or look.work is None:
        return 0
    if isinstance(look.work, int) and isinstance(before.work, int):
        if before.epoch != look.epoch or look.work < before.work:
            return look.work  # restarted since: everything it has counted is new
        return look.work - before.work
    return look.work != before.work


def judge(name: str, look: Look, before: Counter | None, now: float) -> tuple[bool, str]:
    """(busy, reason) for one server."""
    if not look.running:
        return False, f"{name}: not running"
    if look.loading:
        return True, f"{name}: loading its model"
    if look.in_flight:
        return True, f"{name}: {_count(look.in_flight, 'request')} in flight"
    distance = moved(before, look)
    if distance and before is not None:
        ago = format_duration(max(0, round(now - before.at)))
        amount = "used" if distance is True else f"{_count(distance, look.work_unit)}"
        return True, f"{name}: {amount} since the last check, {ago} ago"
    if look.unloaded:
        return False, f"{name}: {look.unloaded}"
    if look.work is None and look.in_flight is None:
        return False, f"{name}: its requests cannot be seen (no activity endpoint)"
    since = "nothing since the last check" if before else "first look, counting from now"
    if look.in_flight is None:
        return False, f"{name}: {since}"
    return False, f"{name}: nothing in flight, {since}"


def _count(number: int, unit: str) -> str:
    return f"{number} {unit[:-1] if number == 1 and unit.endswith('s') else unit}"


# -- parsers, pure ------------------------------------------------------------------------------

_PROMETHEUS_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format: metric name -> value (labels dropped; comments skipped)."""
    values = {}
    for line in text.splitlines():
        match = _PROMETHEUS_LINE.match(line)
        if match:
            try:
                values[match.group(1)] = float(match.group(2))
            except ValueError:
                raise Unreadable(f"/metrics: {line.strip()!r} is not a number") from None
    return values


def llama_metrics(text: str) -> tuple[int, int]:
    """(requests in flight, tokens processed so far) from llama-server's /metrics."""
    values = parse_prometheus(text)
    wanted = ("requests_processing", "requests_deferred", "prompt_tokens_total",
              "tokens_predicted_total")
    missing = [name for name in wanted if f"llamacpp:{name}" not in values]
    if missing:
        raise Unreadable(f"/metrics lacks llamacpp:{missing[0]}")
    if not all(math.isfinite(value) for value in values.values()):
        raise Unreadable("/metrics holds a value that is not finite")
    in_flight = values["llamacpp:requests_processing"] + values["llamacpp:requests_deferred"]
    # cached prompt tokens count too: a request whose whole prompt was cached is still a request
    tokens = (values["llamacpp:prompt_tokens_total"] + values["llamacpp:tokens_predicted_total"]
              + values.get("llamacpp:prompt_tokens_cached_total", 0.0))
    return int(in_flight), int(tokens)


def llama_slots(slots: object) -> tuple[int, str]:
    """(slots processing, a fingerprint of the tasks they served) from llama-server's /slots:
    each new request gets a new id_task on its slot."""
    if not isinstance(slots, list) or not all(isinstance(slot, dict) for slot in slots):
        raise Unreadable("/slots is not a list of slots")
    try:
        processing = sum(bool(slot["is_processing"]) for slot in slots)
    except KeyError:
        raise Unreadable("a slot in /slots has no is_processing") from None
    return processing, ",".join(str(slot.get("id_task", -1)) for slot in slots)


def llama_sleeping(props: object) -> bool:
    """llama-server --sleep-idle-seconds unloads the model and says so in /props."""
    if not isinstance(props, dict):
        raise Unreadable("/props is not an object")
    return props.get("is_sleeping") is True


def ollama_ps(answer: object) -> tuple[bool, str]:
    """(a model is loaded, fingerprint) from Ollama's /api/ps. A model's expires_at is set anew
    each time a request on it ends, so the fingerprint moves with every request."""
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list) or not all(isinstance(model, dict) for model in models):
        raise Unreadable("/api/ps has no list of models")
    loaded = sorted(f"{model.get('name')}@{model.get('expires_at')}" for model in models)
    return bool(loaded), ";".join(loaded)


def swap_running(answer: object) -> tuple[bool, bool]:
    """(a model is loaded or loading, one is starting) from llama-swap's /running."""
    running = answer.get("running") if isinstance(answer, dict) else None
    if not isinstance(running, list) or not all(isinstance(model, dict) for model in running):
        raise Unreadable("/running has no list of models")
    states = [model.get("state") for model in running]
    return any(state in ("ready", "starting") for state in states), "starting" in states


def swap_activity(answer: object) -> int:
    """The newest request's id from llama-swap's /api/metrics/activity (newest first): it grows
    by one with each request that ends."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise Unreadable("/api/metrics/activity has no data list")
    if not data:
        return 0
    newest = data[0].get("id") if isinstance(data[0], dict) else None
    if not isinstance(newest, int):
        raise Unreadable("/api/metrics/activity: an entry without an id")
    return newest


# -- sources, I/O -------------------------------------------------------------------------------

class Source(Protocol):
    kind: str

    def look(self) -> Look: ...


class _NotRunning(Exception):
    pass


class _HttpSource:
    kind = ""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base, self.timeout = base_url.rstrip("/"), timeout

    def _get(self, path: str) -> web.Answer:
        try:
            return web.get(self.base + path, timeout=self.timeout)
        except web.Unreachable:
            raise _NotRunning from None
        except TimeoutError:
            raise Unreadable(f"{path}: no answer within {self.timeout:g} s") from None
        except ValueError as error:
            raise Unreadable(str(error)) from None

    def _json(self, response: web.Answer, path: str) -> Any:
        if response.status != 200:
            raise Unreadable(f"{path} answered HTTP {response.status}")
        try:
            return response.json()
        except ValueError:
            raise Unreadable(f"{path} did not answer JSON") from None

    def look(self) -> Look:
        try:
            return self._look()
        except _NotRunning:
            return Look(running=False)

    def _look(self) -> Look:
        raise NotImplementedError


class LlamaServer(_HttpSource):
    kind = "llama-server"

    def __init__(self, base_url: str, timeout: float = 5.0, read_slots: bool = True) -> None:
        super().__init__(base_url, timeout)
        # /slots does not wake a sleeping model if only read while awake, but each read counts as
        # use and postpones --sleep-idle-seconds: fine every 30 s, not every 2 s (supervisor)
        self.read_slots = read_slots

    def _look(self) -> Look:
        props = self._get("/props")
        if props.status == 503:
            return Look(loading=True)
        sleeping = llama_sleeping(self._json(props, "/props"))
        unloaded = "model unloaded (llama-server sleeping)" if sleeping else ""
        metrics = self._get("/metrics")
        if metrics.status == 200:
            in_flight, tokens = llama_metrics(metrics.text)
            return Look(unloaded=unloaded, in_flight=in_flight, work=tokens, work_unit="tokens",
                        epoch=metrics.headers.get("process-start-time-unix", ""))
        if metrics.status != 501:
            raise Unreadable(f"/metrics answered HTTP {metrics.status}")
        if sleeping or not self.read_slots:
            return Look(unloaded=unloaded)  # /slots would wake it: nothing more to read
        slots = self._get("/slots")
        if slots.status == 501:
            raise Unreadable("/metrics and /slots are both off: start llama-server with --metrics")
        processing, tasks = llama_slots(self._json(slots, "/slots"))
        return Look(in_flight=processing, work=tasks, work_unit="tasks")


class LlamaSwap(_HttpSource):
    kind = "llama-swap"

    def _look(self) -> Look:
        loaded, starting = swap_running(self._json(self._get("/running"), "/running"))
        if starting:
            return Look(loading=True)
        activity = self._get("/api/metrics/activity?limit=1")
        newest = swap_activity(self._json(activity, "/api/metrics/activity"))
        return Look(unloaded="" if loaded else "no model running (llama-swap)", work=newest)


class Ollama(_HttpSource):
    kind = "ollama"

    def _look(self) -> Look:
        loaded, fingerprint = ollama_ps(self._json(self._get("/api/ps"), "/api/ps"))
        return Look(unloaded="" if loaded else "no model loaded (ollama)", work=fingerprint)


class NoActivity:
    """whisper-server and anything else without an activity endpoint: the other signals decide."""

    kind = "none"

    def look(self) -> Look:
        return Look()


def base_url(health_url: str) -> str:
    parts = urlsplit(health_url)
    return f"{parts.scheme}://{parts.netloc}"


def source_for(server: ServerConfig, timeout: float = 5.0, read_slots: bool = True) -> Source:
    base = base_url(server.health_url)
    if server.activity == "llama-server":
        return LlamaServer(base, timeout, read_slots)
    if server.activity == "llama-swap":
        return LlamaSwap(base, timeout)
    if server.activity == "ollama":
        return Ollama(base, timeout)
    return NoActivity()


CANNOT_SHOW = {
    "llama-server": "",
    "llama-swap": "a request still in flight shows only when it ends (or through the GPU signal)",
    "ollama": "a request still in flight shows only when it ends (or through the GPU signal)",
    "none": "no request is seen at all: only the GPU and sleep inhibitors can keep the box up "
            "while it serves",
}
