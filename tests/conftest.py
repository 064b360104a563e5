"""Shared pieces for tests that run the real programs: free ports, a notify socket the test
owns, the fake llama-server behind a fake NIC, and the proxy under systemd-socket-activate."""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FAKE_SERVER = TESTS / "fake_llama_server.py"
FAKE_SERVERS = TESTS / "fake_servers.py"  # Ollama, vLLM, llama-swap
WOL_LISTENER = TESTS / "wol_listener.py"
MAC = "ab:cd:ef:01:23:45"

# hundreds of concurrent clients need more than the default 1024 fds
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(_soft, min(_hard, 65536)), _hard))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


class NotifySocket:
    """Collects what a program sends to $NOTIFY_SOCKET, as systemd would receive it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except OSError:
                return

    def statuses(self) -> list[str]:
        return [line[len("STATUS="):] for message in self.messages
                for line in message.splitlines() if line.startswith("STATUS=")]

    def close(self) -> None:
        self.sock.close()


class Process:
    """A child process whose output goes to a file the test can read while it runs."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.output = log.open("wb")
        self.popen = subprocess.Popen(command, stdout=self.output, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, 15)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()
        self.output.close()


class SleepingBackend:
    """A fake server (llama-server, or kind "ollama", "vllm", "llama-swap") that does not run
    until a magic packet for MAC reaches its "NIC"."""

    def __init__(self, directory: Path, *, load_seconds: float, tokens: int = 5,
                 token_delay: float = 0.0, wol_port: int | None = None,
                 prefix: list[str] | None = None, host: str = "127.0.0.1",
                 kind: str = "llama-server") -> None:
        self.port = free_port()
        self.wol_port = wol_port or free_port(socket.SOCK_DGRAM)
        self.ready_file = directory / "backend-ready"
        self.script = FAKE_SERVER if kind == "llama-server" else FAKE_SERVERS
        self.server_command = [
            sys.executable, str(self.script), *([] if kind == "llama-server" else ["--kind", kind]),
            "--host", host, "--port", str(self.port),
            "--load-seconds", str(load_seconds), "--tokens", str(tokens),
            "--token-delay", str(token_delay), "--ready-file", str(self.ready_file)]
        self.listener = Process(
            [*(prefix or []), sys.executable, str(WOL_LISTENER), "--port", str(self.wol_port),
             "--mac", MAC, "--", *self.server_command],
            directory / "wol-listener.log")
        wait_for(lambda: "listening" in self.listener.text(), what="the wake listener")

    def packets(self) -> list[float]:
        return [float(line.split()[2]) for line in self.listener.text().splitlines()
                if line.startswith("packet ")]

    def kill_server(self) -> None:
        """The box went away (suspended by hand, cable pulled): its server stops answering."""
        # anchored: the wake listener's own command line holds the server's too
        pattern = (f"^{re.escape(self.server_command[0])} {re.escape(str(self.script))} "
                   f".*--port {self.port} ")
        subprocess.run(["pkill", "-f", pattern], check=True)
        self.ready_file.unlink()

    def ready_at(self) -> float:
        return float(self.ready_file.read_text())

    def stop(self) -> None:
        self.listener.stop()


def socket_inode(remote: tuple, local: tuple) -> str:
    """"socket:[INODE]" of the TCP socket at `local` connected to `remote` (IPv4, /proc/net/tcp),
    as /proc/PID/fd links name it; "" if there is none (not accepted yet)."""

    def hex_address(address: tuple) -> str:
        return f"{socket.inet_aton(address[0])[::-1].hex().upper()}:{address[1]:04X}"

    wanted = (hex_address(local), hex_address(remote))
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted and fields[9] != "0":
            return f"socket:[{fields[9]}]"
    return ""


class ProxyRun:
    def __init__(self, directory: Path, table: str, *, activate: bool = True,
                 listen: str | None = None, extra_args: list[str] | None = None,
                 state_directory: Path | None = None, wrapper: list[str] | None = None) -> None:
        """wrapper: a command the whole runs under (prlimit ...)."""
        self.config = directory / "sleepyllama.toml"
        self.config.write_text(table)
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.notify = NotifySocket(directory / "notify")
        program = [sys.executable, "-m", "sleepyllama.proxy", "--config", str(self.config), "-v",
                   *(extra_args or [])]
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path), "PYTHONUNBUFFERED": "1"}
        if state_directory is not None:  # as systemd's StateDirectory= sets it
            env["STATE_DIRECTORY"] = str(state_directory)
        if activate:
            command = ["systemd-socket-activate", "-l", self.listen,
                       "-E", f"NOTIFY_SOCKET={self.notify.path}",
                       *(["-E", f"STATE_DIRECTORY={state_directory}"] if state_directory else []),
                       *program]
        else:
            command = [*program, "--listen", self.listen]
        self.process = Process([*(wrapper or []), *command], directory / "proxy.log", env)
        if activate:
            wait_for(lambda: "Listening on" in self.process.text(), what="systemd-socket-activate")
        else:
            wait_for(lambda: any("READY=1" in m for m in self.notify.messages), what="READY=1")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listen.rsplit(":", 1)
        return host.strip("[]"), int(port)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.process.popen.pid}/fd"))

    def holds(self, client: socket.socket) -> bool:
        """Whether the proxy has accepted `client`: an fd of its is the other end's socket."""
        return socket_inode(client.getsockname(), client.getpeername()) in {
            os.readlink(f"/proc/{self.process.popen.pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{self.process.popen.pid}/fd")}

    def log(self) -> str:
        return self.process.text()

    def stop(self) -> None:
        self.process.stop()
        self.notify.close()


def proxy_table(sleeping: SleepingBackend | None, **keys: object) -> str:
    values: dict[str, object] = {"mac": MAC, "broadcast": "127.255.255.255"}
    if sleeping is not None:
        values |= {"backend": f"127.0.0.1:{sleeping.port}", "wol_port": sleeping.wol_port}
    values |= keys
    lines = ["[proxy.llama]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, list | tuple):
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def http_request(address: tuple[str, int], request: bytes, timeout: float = 30.0) -> bytes:
    """Send one raw HTTP request on a new connection and read the whole response (to EOF)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: llama\r\nConnection: close\r\n\r\n"


def chat_request(stream: bool, content: str = "hi") -> bytes:
    body = (b'{"model": "m", "stream": %s, "max_tokens": 16, "messages": [{"role": "user", '
            b'"content": "%s"}]}') % (b"true" if stream else b"false", content.encode())
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: llama\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


# each test's layer (pyproject.toml's markers), by where it lives, unless the test says: a
# directory or a file here, else loopback. A pure one that is not fails (pure_means_no_io).
PURE = ("test_addresses.py", "test_config.py", "test_docs.py", "test_files.py", "test_history.py",
        "test_kept_answers.py", "test_learned.py", "test_ledger.py", "test_prewake_replay.py",
        "test_rejections.py", "test_sleep_actions.py", "test_steer.py", "test_tables.py",
        "test_windows.py", "test_words.py", "dashboard/test_boxes.py", "dashboard/test_metrics.py",
        "dashboard/test_own_box.py", "dashboard/test_page.py", "host/test_activity.py",
        "host/test_idle.py", "host/test_nvidia_power.py", "host/test_pstate.py",
        "host/test_sleep_support.py", "host/test_state.py", "kinds/test_kinds.py",
        "kinds/test_llama_server.py", "kinds/test_llama_swap.py", "kinds/test_ollama.py",
        "kinds/test_vllm.py", "proxy/test_api_key.py", "proxy/test_live.py",
        "proxy/test_policy.py", "proxy/test_readiness.py", "proxy/test_wake_record.py",
        "proxy/test_wake_state.py", "proxy/test_wake_context.py",
        "proxy/test_reply.py", "test_command_line.py",
        "kinds/test_base.py", "kinds/test_none.py", "dashboard/test_steered.py",
        "host/test_stay_awake.py", "host/signals/test_base.py", "host/signals/test_schedule.py",
        "host/signals/test_inhibitors.py", "host/signals/test_load.py",
        "host/signals/test_sessions.py")
LAYER_OF = {"system": "container", "kinds/test_real_llama_server.py": "llama",
            "dashboard/test_browser.py": "browser", "proxy/test_lan.py": "root",
            **dict.fromkeys(PURE, "pure")}
LAYERS = ("pure", "loopback", "root", "container", "llama", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(layer) for layer in LAYERS):
            continue
        try:
            where = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        except ValueError:
            where = ""
        layer = next((layer for prefix, layer in LAYER_OF.items()
                      if where == prefix or where.startswith(prefix + "/")), "loopback")
        item.add_marker(getattr(pytest.mark, layer))


class NotPure(AssertionError):
    pass


@pytest.fixture(autouse=True)
def pure_means_no_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A test marked pure that opens a socket or runs a program fails: the fast layer stays
    fast, and its marker stays true."""
    if request.node.get_closest_marker("pure") is None:
        yield
        return

    def refused(*_args: object, **_kwargs: object) -> None:
        raise NotPure(f"{request.node.nodeid} is marked pure, but opened a socket or ran a "
                      "program: mark it loopback")

    class NoSocket(socket.socket):
        __init__ = refused  # type: ignore[assignment]

    class NoProgram(subprocess.Popen):  # type: ignore[type-arg]
        __init__ = refused  # type: ignore[assignment]

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(subprocess, "Popen", NoProgram)
    yield


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test (what a weekday and a time of day are), and this
    machine's again after it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def cleanup() -> Iterator[list]:
    """Things with .stop() to stop after the test, whatever happens."""
    things: list = []
    yield things
    for thing in reversed(things):
        thing.stop()


def sleepyllama_command(config: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sleepyllama.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def require(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (it comes with the package named in README)")


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter (python ARGS) run as the user nobody, from the checkout: what a person
    without root meets."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, *args], capture_output=True, text=True,
                          cwd=TESTS.parent)


def require_another_user() -> None:
    """Skip, saying why, where another user cannot be tried: not root, or an interpreter that
    user cannot run (one built with a shared libpython under a private home)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")
    tried = as_nobody("-c", "pass")
    if tried.returncode != 0:
        pytest.skip(f"this interpreter cannot be run by another user: {tried.stderr.strip()[:200]}")


def udp_to(address: tuple[str, int], data: bytes) -> None:
    """One datagram (a hint from the GPU box, or junk) to the proxy's address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, address)


STAND_INS = TESTS / "stand-ins"


def build_fake_libcuda(directory: Path) -> Path:
    """The stand-in libcuda.so.1 (tests/stand-ins/libcuda.c), built with gcc into `directory`:
    dlopen("libcuda.so.1") finds it there through LD_LIBRARY_PATH."""
    require("gcc")
    library = directory / "libcuda.so.1"
    if not library.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(library),
                        str(STAND_INS / "libcuda.c")], check=True)
    return library


@pytest.fixture(scope="session")
def fake_libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_libcuda(tmp_path_factory.mktemp("libcuda"))
