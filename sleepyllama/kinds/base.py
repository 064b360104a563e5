"""What every kind of model server shares: the shape of a look at its activity, reading it over
HTTP (with the server's own API key), and the questions each kind answers about itself.

A kind (llama_server.py, ollama.py, llama_swap.py, vllm.py, none.py) answers every question that
either host asks about one kind of server: how it is recognised from its command, where it
listens and what its ready check is, which requests only look (answered by the proxy while the
box sleeps), how its activity is read without loading a model, and what it cannot show.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # web (http.client) only where a kind reads a server: the config needs none
    from sleepyllama import http_get


class Unreadable(Exception):
    """The server answered, but not so that its activity can be read: counted busy."""


class NotRunning(Exception):
    """Nothing listens where the server should: its unit is not running (or not yet)."""


@dataclass(frozen=True)
class Look:
    running: bool = True
    loading: bool = False
    unloaded: str = ""  # why there is no model in memory ("" while one is loaded)
    in_flight: int | None = None  # None: this kind cannot tell
    work: int | str | None = None  # moves with every request; None: no counter
    work_unit: str = "requests"
    epoch: str = ""  # changes when the counter starts again (a restarted process)
    # every other number the server gives that moves with use: a request too small to move
    # `work` (llama-server prints counters with 6 significant digits) still moves one of these
    fingerprint: str = ""
    models: str = ""  # "1 of 3 models loaded", for servers that hold several


class Source(Protocol):
    kind: str

    def look(self) -> Look: ...


class HttpSource:
    """GETs against one server, with its API key; a refused connection is NotRunning."""

    kind = ""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 5.0) -> None:
        self.base, self.api_key, self.timeout = base_url.rstrip("/"), api_key, timeout

    def get(self, path: str) -> http_get.Answer:
        from sleepyllama import http_get

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            answer = http_get.get(self.base + path, timeout=self.timeout, headers=headers)
        except http_get.Refused:
            raise NotRunning from None
        except http_get.Unreachable as error:
            # a reset or no route is not "not running": only a refused connect says that
            raise Unreadable(f"{path.split('?')[0]}: {error.strerror or error}") from None
        except TimeoutError:
            raise Unreadable(f"{path}: no answer within {self.timeout:g} s") from None
        except ValueError as error:
            raise Unreadable(str(error)) from None
        if answer.status == 401:
            raise Unreadable(f"{path.split('?')[0]} answered 401: " + (
                "the API key sleepyllama read from the server's command was refused"
                if self.api_key else "it wants an API key, and none was found in the server's "
                "command (--api-key or --api-key-file)"))
        return answer

    def json(self, answer: http_get.Answer, path: str) -> Any:
        if answer.status != 200:
            raise Unreadable(f"{path} answered HTTP {answer.status}")
        try:
            return answer.json()
        except ValueError:
            raise Unreadable(f"{path} did not answer JSON") from None

    def look(self) -> Look:
        try:
            return self.read()
        except NotRunning:
            return Look(running=False)

    def read(self) -> Look:
        raise NotImplementedError


class BrokenSource:
    """A source that cannot be built (its API key file unreadable): every look says why."""

    kind = "broken"

    def __init__(self, why: str) -> None:
        self.why = why

    def look(self) -> Look:
        raise Unreadable(self.why)


class NoSource:
    """A server without an activity endpoint: the other signals decide."""

    kind = "none"

    def look(self) -> Look:
        return Look()


# -- parsing, pure -------------------------------------------------------------------------------

_PROMETHEUS_LINE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)")


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format: metric name -> value, summed over its label sets (vLLM labels each
    series by model and engine); comments skipped. A value that is not finite is Unreadable."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _PROMETHEUS_LINE.match(line)
        if match:
            try:
                value = float(match.group(2))
            except ValueError:
                raise Unreadable(f"/metrics: {line.strip()!r} is not a number") from None
            if not math.isfinite(value):
                raise Unreadable(f"/metrics: {line.strip()!r} is not a finite number")
            values[match.group(1)] = values.get(match.group(1), 0.0) + value
    return values


def totals(text: str, prefix: str, in_flight: Sequence[str], tokens: Sequence[str],
           more_tokens: Sequence[str] = ()) -> tuple[int, int, str]:
    """(requests in flight, tokens so far, a fingerprint of every *_total counter) from a
    server's /metrics, its metric names under `prefix`; Unreadable without the ones named."""
    values = parse_prometheus(text)
    missing = [name for name in (*in_flight, *tokens) if f"{prefix}{name}" not in values]
    if missing:
        raise Unreadable(f"/metrics lacks {prefix}{missing[0]}")
    busy = sum(values[f"{prefix}{name}"] for name in in_flight)
    count = sum(values[f"{prefix}{name}"] for name in tokens) + sum(
        values.get(f"{prefix}{name}", 0.0) for name in more_tokens)
    # every counter that moves with use: seconds and decode counts move where a token count,
    # printed with 6 significant digits, may not
    fingerprint = ",".join(f"{name}={values[name]:g}" for name in sorted(values)
                           if name.startswith(prefix) and name.endswith("_total"))
    return int(busy), int(count), fingerprint


def flag_value(command: Sequence[str], *flags: str) -> str | None:
    """The value of the last of `flags` in a command ("--port 8080" or "--port=8080")."""
    found = None
    for flag, value in itertools.pairwise(command):
        if flag in flags:
            found = value
    for argument in command:
        name, equals, value = argument.partition("=")
        if equals and name in flags:
            found = value
    return found


SECRET_FLAGS = ("--api-key", "--hf-token", "-hft", "--token")


def redacted(command: Sequence[str]) -> list[str]:
    """The command with the values of its secret flags (--api-key KEY, --api-key=KEY) hidden,
    for the journal: an API key is never logged."""
    shown, hide_next = [], False
    for argument in command:
        name, equals, _value = argument.partition("=")
        if hide_next:
            shown.append("***")
        elif equals and name in SECRET_FLAGS:
            shown.append(f"{name}=***")
        else:
            shown.append(argument)
        hide_next = argument in SECRET_FLAGS
    return shown


def url(host: str, port: int | str, path: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard listener is reached on loopback
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"


@dataclass(frozen=True)
class GpuLine:
    """What one line of a server's output says of where its model went."""

    on_cpu: str = ""  # why it runs on the CPU ("CUDA failed to initialize (unknown error)")
    layers: tuple[int, int] | None = None  # (on the GPU, of all), as the load reports them


_CUDA_FAILED = re.compile(r"failed to initialize CUDA: (.+)$")
_NO_GPU = re.compile(r"no usable GPU found|no compatible GPUs were discovered")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def llama_cpp_gpu_line(line: str) -> GpuLine | None:
    """llama.cpp's own lines (0c1e570: ggml_cuda_init, the --gpu-layers warning, load_tensors),
    which llama-server prints and Ollama's runners pass on; Ollama's discovery line too."""
    if match := _CUDA_FAILED.search(line):
        return GpuLine(on_cpu=f"CUDA failed to initialize ({match.group(1).strip()})")
    if _NO_GPU.search(line):
        return GpuLine(on_cpu="no usable GPU found")
    if match := _OFFLOADED.search(line):
        on_gpu, total = int(match.group(1)), int(match.group(2))
        return GpuLine(on_cpu="" if on_gpu else "0 layers offloaded to the GPU",
                       layers=(on_gpu, total))
    return None


class Kind:
    """One kind of model server. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    programs: ClassVar[tuple[str, ...]] = ()  # program names (prefixes) that run this kind
    default_host: ClassVar[str] = "127.0.0.1"
    default_port: ClassVar[int] = 8080
    ready_path: ClassVar[str] = "/health"  # 200 here once it serves
    # seconds from the box answering to its server listening, at most, on a box that has just
    # resumed (its servers start after the GPU check); None: not known (refusals are waited out)
    listens_within: ClassVar[float | None] = None
    # a line of its own output that says it may serve now: the supervisor asks at once
    ready_line: ClassVar[re.Pattern[str] | None] = None
    # requests a frontend sends only to look (a model list): answered from the cache while asleep
    look_only: ClassVar[tuple[str, ...]] = ()
    # fixed answers that are true whenever the box sleeps (Ollama's /api/ps: nothing loaded):
    # path -> (Content-Type, body), as the server itself answers
    asleep_answers: ClassVar[Mapping[str, tuple[str, bytes]]] = {}
    cannot_show: ClassVar[str] = ""  # what the idle check cannot see of its use ("": nothing)
    sees_requests: ClassVar[bool] = True  # the idle check sees its requests (in any way)
    shows: ClassVar[str] = ""  # how the idle check sees its use, for `sleepyllama check`

    def recognises(self, command: Sequence[str]) -> bool:
        program = Path(command[0]).name if command else ""
        return any(program.startswith(name) for name in self.programs)

    def listen(self, command: Sequence[str],
               environment: Mapping[str, str] | None = None) -> tuple[str, str]:
        """(host, port) the server listens on, from its command line (and, for a kind that
        reads it there, its unit's environment)."""
        return (flag_value(command, "--host") or self.default_host,
                flag_value(command, "--port") or str(self.default_port))

    def listen_everywhere(self, port: str) -> str | None:
        """How a person makes it listen beyond loopback; None: a kind whose address is not
        known (the check then says nothing of it)."""
        return None

    def health_url(self, command: Sequence[str]) -> str:
        host, port = self.listen(command)
        return url(host, port, self.ready_path)

    def api_key(self, command: Sequence[str]) -> str | None:
        """The key clients must send, where the command says it; None when it wants none."""
        return None

    def key_file(self, command: Sequence[str]) -> str | None:
        """The file api_key() reads the key from, where the command names one."""
        return None

    def needs_key(self, method: str, path: str) -> bool | None:
        """Whether, started with an API key, it refuses this request without it: the proxy then
        answers 401 at once rather than wake the box for a refusal. None: a kind that takes no
        key."""
        return None

    def source(self, base_url: str, command: Sequence[str], timeout: float = 5.0,
               gentle: bool = False) -> Source:
        """How its activity is read. gentle: for the supervisor's frequent looks, read nothing
        that counts as use."""
        return NoSource()

    def advice(self, command: Sequence[str]) -> list[str]:
        """What to change in the command so that its activity can be read, one line each."""
        return []

    def gpu_line(self, line: str) -> GpuLine | None:
        """What a line of its output says of where its model runs (None: nothing)."""
        return None

    def wants_gpu(self, command: Sequence[str]) -> bool:
        """Its command asks for the GPU outright (a CPU load is then wrong even the first time)."""
        return False
