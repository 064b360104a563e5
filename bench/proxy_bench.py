#!/usr/bin/env python3
"""Benchmark the proxy against systemd-socket-proxyd and the direct path, side by side in one run.

All three paths are measured in the same run, interleaved round by round, on loopback, so the
ratios hold even on a shared, noisy machine; the absolute figures do not travel.

  throughput   bytes through one connection each way (client -> backend, backend -> client)
  latency      one small HTTP request per new connection: connect, request, response, close;
               one on each path in turn
  wake lag     from the moment /health turns 200 to the first byte of the held client's response,
               polled and with the GPU box's "ready" hint; on loopback, where a connect to the
               sleeping backend is refused at once, and on a LAN-like path (--lan-wakes, needs
               root): the box in a network namespace of its own behind a veth, its replies
               dropped while it sleeps as a suspended machine's are, woken by a real magic
               packet after a resume of 1.5 to 2.5 s (bench/asleep_box.py)

Both proxies are socket-activated by systemd-socket-activate, as systemd would run them.
  python bench/proxy_bench.py [--gib 1] [--requests 2000] [--rounds 3] [--wakes 10] [--lan-wakes 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fake_llama_server.py"
ASLEEP_BOX = ROOT / "bench" / "asleep_box.py"
MAC = "ab:cd:ef:01:23:45"
SOCKET_PROXYD = next((p for p in ("/usr/lib/systemd/systemd-socket-proxyd",
                                  "/lib/systemd/systemd-socket-proxyd") if os.path.exists(p)), None)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
BLOCK = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the backend: HTTP answered inline, bulk modes on threads --------------------------------

def bulk(conn: socket.socket, head: bytes) -> None:
    conn.setblocking(True)
    with conn:
        if head.startswith(b"SINK"):  # b"SINK <bytes>\n": sized, because socket-proxyd
            # does not carry a half-close (it ends the connection on the client's EOF)
            expected = int(head[5:head.index(b"\n")])
            total, buffer = len(head) - head.index(b"\n") - 1, bytearray(BLOCK)
            while total < expected and (count := conn.recv_into(buffer)):
                total += count
            conn.sendall(str(total).encode())
        else:  # b"SRCE <bytes>\n"
            remaining, block = int(head[5:head.index(b"\n")]), memoryview(b"\0" * BLOCK)
            while remaining > 0:
                remaining -= conn.send(block[:min(BLOCK, remaining)])


def serve_backend(listener: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    heads: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                heads[conn] = b""
                selector.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj  # type: ignore[assignment]
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            head = heads[conn] = heads[conn] + data
            if head.startswith((b"SINK", b"SRCE")) and b"\n" in head:
                selector.unregister(conn)
                del heads[conn]
                threading.Thread(target=bulk, args=(conn, head), daemon=True).start()
            elif b"\r\n\r\n" in head or not data:
                selector.unregister(conn)
                del heads[conn]
                if data:
                    conn.send(RESPONSE)
                conn.close()


# -- the clients ------------------------------------------------------------------------------

def upload(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        block = memoryview(b"\1" * BLOCK)
        started = time.perf_counter()
        sock.sendall(b"SINK %d\n" % size)
        for _ in range(size // BLOCK):
            sock.sendall(block)
        received = int(sock.recv(64))
        elapsed = time.perf_counter() - started
    assert received == size, (received, size)
    return size / elapsed


def download(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = bytearray(BLOCK)
        started = time.perf_counter()
        sock.sendall(b"SRCE %d\n" % size)
        total = 0
        while count := sock.recv_into(buffer):
            total += count
        elapsed = time.perf_counter() - started
    assert total == size, (total, size)
    return size / elapsed


def latency(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(REQUEST)
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
    assert response.endswith(b"ok"), response
    return time.perf_counter() - started


def latencies(port: int, count: int) -> list[float]:
    return [latency(port) for _ in range(count)]


def interleaved_latencies(ports: dict[str, int], count: int) -> dict[str, list[float]]:
    """One request on each path in turn: whatever else the machine does at a moment (a CPU's
    frequency, another process) falls on every path alike, and the ratios hold still."""
    samples: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(count):
        for name, port in ports.items():
            samples[name].append(latency(port))
    return samples


# -- the paths --------------------------------------------------------------------------------

def socket_activated(port: int, command: list[str], log: Path) -> subprocess.Popen[bytes]:
    # it passes on only the variables named: PYTHONPATH runs another checkout's proxy (to compare)
    passed = ["-E", "PYTHONPATH"] if "PYTHONPATH" in os.environ else []
    process = subprocess.Popen(["systemd-socket-activate", *passed, "-l", f"127.0.0.1:{port}",
                                *command],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while "Listening on" not in log.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"systemd-socket-activate did not start: {log.read_text()}")
        time.sleep(0.02)
    return process


def proxy_config(directory: Path, port: int, backend: str, wol: tuple[str, int] | None = None,
                 **keys: str) -> Path:
    """[proxy.bench] for a backend at host:port; wol: where the magic packets go (else to a
    free port on loopback, where nothing listens)."""
    broadcast, wol_port = wol or ("127.0.0.1", free_port())
    config = directory / f"proxy-{port}.toml"
    lines = [f'backend = "{backend}"', f'mac = "{MAC}"', f'broadcast = "{broadcast}"',
             f"wol_port = {wol_port}"]
    lines += [f'{key} = "{value}"' for key, value in keys.items()]
    config.write_text("[proxy.bench]\n" + "\n".join(lines) + "\n")
    return config


def proxy_program() -> str:
    return shutil.which("sleepyllama-proxy") or str(Path(sys.executable).parent / "sleepyllama-proxy")


def our_proxy(port: int, backend: int, directory: Path, **keys: str) -> subprocess.Popen[bytes]:
    config = proxy_config(directory, port, f"127.0.0.1:{backend}", **keys)
    return socket_activated(port, [proxy_program(), "--config", str(config)],
                            directory / f"proxy-{port}.log")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def by_hand(port: int, backend: str, directory: Path, wol: tuple[str, int] | None = None,
            host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """The proxy on --listen, which opens UDP beside TCP for the GPU box's hints."""
    config = proxy_config(directory, port, backend, wol, wol_interval="1s")
    process = subprocess.Popen([proxy_program(), "--config", str(config), "--listen",
                                f"{host}:{port}"],
                               stderr=(directory / f"proxy-{port}.log").open("wb"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return process
        time.sleep(0.05)
    raise SystemExit("the proxy did not start listening")


def tell_ready_when(ready_file: Path, proxy_port: int) -> None:
    """What the supervisor does on READY: a "ready" datagram to the proxy's port."""
    while not ready_file.exists():
        time.sleep(0.0005)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"sleepyllama-hint 1 ready bench\n", ("127.0.0.1", proxy_port))


def wake_lags(directory: Path, wakes: int, hints: bool = False) -> list[float]:
    """Each wake as it happens: the backend is down when the client arrives (so it is held),
    then the box "resumes" and its server loads for 0.5 s. The lag runs from the moment /health
    turns 200 (CLOCK_MONOTONIC, shared across processes) to the client's first byte. With
    hints, the "ready" datagram goes out as the server turns ready (as the supervisor sends it
    on READY), and the proxy probes at once instead of at its next 0.1 s poll."""
    backend_port, proxy_port = free_port(), free_port()
    proxy = (by_hand(proxy_port, f"127.0.0.1:{backend_port}", directory) if hints else
             our_proxy(proxy_port, backend_port, directory, wol_interval="1s"))
    lags = []
    try:
        for index in range(wakes):
            ready_file = directory / f"ready-{'hinted' if hints else 'polled'}-{index}"
            ready_file.unlink(missing_ok=True)  # a file left by another run would tell too soon
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=30) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                # held: nothing listens on the backend's port yet. Drawn, so that the moment it
                # turns ready falls anywhere between two polls, as a real box's does
                time.sleep(random.uniform(0.3, 0.4))
                server = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port",
                                           str(backend_port), "--load-seconds", "0.5",
                                           "--ready-file", str(ready_file)], stdout=subprocess.DEVNULL)
                if hints:
                    threading.Thread(target=tell_ready_when, args=(ready_file, proxy_port),
                                     daemon=True).start()
                try:
                    first = sock.recv(1)
                    first_byte_at = time.monotonic()
                    assert first == b"H"
                    while sock.recv(4096):
                        pass
                    lags.append(first_byte_at - float(ready_file.read_text()))
                finally:
                    server.terminate()
                    server.wait()
    finally:
        proxy.terminate()
        proxy.wait()
    return lags


class LanBox:
    """The GPU box in a network namespace of its own, joined to this one by a veth pair: this
    side 10.78.N.1, the box 10.78.N.2, magic packets broadcast to 10.78.N.255."""

    def __init__(self, directory: Path) -> None:
        self.namespace = f"sl-bench-box-{os.getpid()}"
        self.veth = f"slbench{os.getpid() % 100000}"
        subnet = f"10.78.{random.randrange(1, 250)}"
        self.here, self.box, self.broadcast = f"{subnet}.1", f"{subnet}.2", f"{subnet}.255"
        self.directory = directory
        commands = [
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "box0"],
            ["ip", "link", "set", "box0", "netns", self.namespace],
            ["ip", "addr", "add", f"{self.here}/24", "brd", self.broadcast, "dev", self.veth],
            ["ip", "link", "set", self.veth, "up"],
            ["ip", "-n", self.namespace, "addr", "add", f"{self.box}/24", "brd", self.broadcast,
             "dev", "box0"],
            ["ip", "-n", self.namespace, "link", "set", "box0", "up"],
            ["ip", "-n", self.namespace, "link", "set", "lo", "up"],
        ]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
        except subprocess.CalledProcessError as error:
            self.remove()
            raise SystemExit(f"cannot build the LAN path ({' '.join(error.cmd)}): "
                             f"{error.stderr.decode().strip()}") from error

    def start(self, ready_dir: Path, hint_port: int | None) -> subprocess.Popen[str]:
        command = ["ip", "netns", "exec", self.namespace, sys.executable, str(ASLEEP_BOX),
                   "--mac", MAC, "--host", self.box, "--always-on", self.here,
                   "--ready-dir", str(ready_dir)]
        if hint_port:
            command += ["--hint-port", str(hint_port)]
        box = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.expect(box, "asleep")
        return box

    @staticmethod
    def expect(box: subprocess.Popen[str], word: str) -> str:
        assert box.stdout is not None
        while line := box.stdout.readline():
            if line.startswith(word):
                return line
        raise SystemExit(f"the sleeping box ended before it said {word!r}")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], check=False, capture_output=True)


def lan_wake_lags(lan: LanBox, wakes: int, hints: bool = False) -> list[float]:
    """Each wake as a LAN has it: the client arrives while the box sleeps (a connect to it
    hangs), the magic packet resumes it, its server answers /health at once. The lag runs from
    that answer to the held client's first byte."""
    label = "hinted" if hints else "polled"
    ready_dir = lan.directory / f"lan-{label}"
    ready_dir.mkdir()
    proxy_port = free_port()
    wol = (lan.broadcast, 9)
    if hints:
        proxy = by_hand(proxy_port, f"{lan.box}:8080", lan.directory, wol, host=lan.here)
        address = (lan.here, proxy_port)
    else:
        config = proxy_config(lan.directory, proxy_port, f"{lan.box}:8080", wol,
                              wol_interval="1s")
        proxy = socket_activated(proxy_port, [proxy_program(), "--config", str(config)],
                                 lan.directory / f"proxy-{proxy_port}.log")
        address = ("127.0.0.1", proxy_port)
    lags: list[float] = []
    box: subprocess.Popen[str] | None = None
    try:
        box = lan.start(ready_dir, proxy_port if hints else None)
        assert box.stdin is not None
        for index in range(1, wakes + 1):
            with socket.create_connection(address, timeout=60) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                first = sock.recv(1)
                first_byte_at = time.monotonic()
                assert first == b"H", first
                while sock.recv(4096):
                    pass
            lags.append(first_byte_at - float((ready_dir / f"ready-{index}").read_text()))
            box.stdin.write("sleep\n")
            box.stdin.flush()
            lan.expect(box, "asleep")
            print(f"LAN wake {index}/{wakes} ({label}): {lags[-1] * 1000:.1f} ms", file=sys.stderr)
    finally:
        if box is not None:
            box.terminate()
            box.wait()
        proxy.terminate()
        proxy.wait()
    return lags


def describe_lags(what: str, lags: list[float]) -> str:
    return (f"{what}, {len(lags)} wakes: median {statistics.median(lags) * 1000:.1f} ms, "
            f"max {max(lags) * 1000:.1f} ms, all {', '.join(f'{lag * 1000:.0f}' for lag in lags)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="GiB each way per path (default 1)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per path (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--wakes", type=int, default=10, help="wakes for the lag (default 10)")
    parser.add_argument("--lan-wakes", type=int, default=8,
                        help="wakes on the LAN-like path, each mode (default 8; 0: skip it)")
    args = parser.parse_args()
    if SOCKET_PROXYD is None or shutil.which("systemd-socket-activate") is None:
        sys.exit("needs systemd-socket-proxyd and systemd-socket-activate (Debian package systemd)")

    directory = Path(tempfile.mkdtemp(prefix="sleepyllama-bench-"))
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    backend = listener.getsockname()[1]
    threading.Thread(target=serve_backend, args=(listener,), daemon=True).start()
    proxyd_port, ours_port = free_port(), free_port()
    processes = [
        socket_activated(proxyd_port, [SOCKET_PROXYD, f"127.0.0.1:{backend}"],
                         directory / "socket-proxyd.log"),
        our_proxy(ours_port, backend, directory, health_url=""),
    ]
    paths = {"direct": backend, "systemd-socket-proxyd": proxyd_port, "sleepyllama-proxy": ours_port}
    size = int(args.gib * (1 << 30)) // BLOCK * BLOCK
    up: dict[str, list[float]] = {name: [] for name in paths}
    down: dict[str, list[float]] = {name: [] for name in paths}
    lat: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for port in paths.values():
            latencies(port, 50)  # warm up: starts the socket-activated proxies
        per_round = max(1, args.requests // args.rounds)
        for round_number in range(args.rounds):
            for name, port in paths.items():
                up[name].append(upload(port, size))
                down[name].append(download(port, size))
            for name, samples in interleaved_latencies(paths, per_round).items():
                lat[name] += samples
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        lags = wake_lags(directory, args.wakes) if args.wakes else []
        hinted = wake_lags(directory, args.wakes, hints=True) if args.wakes else []
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    lan_polled: list[float] = []
    lan_hinted: list[float] = []
    if args.lan_wakes and os.geteuid() != 0:
        print("the LAN-like path needs root (a network namespace): skipped", file=sys.stderr)
    elif args.lan_wakes:
        lan = LanBox(directory)
        try:
            lan_polled = lan_wake_lags(lan, args.lan_wakes)
            lan_hinted = lan_wake_lags(lan, args.lan_wakes, hints=True)
        finally:
            lan.remove()

    gib = float(1 << 30)
    reference = "systemd-socket-proxyd"
    print(f"\nloopback, {os.cpu_count()} CPUs, {args.rounds} interleaved rounds; "
          f"{size / gib:g} GiB each way per round; {len(lat['direct'])} requests per path\n")
    print(f"{'path':24} {'up GiB/s':>9} {'down GiB/s':>11} {'p50 µs':>8} {'p99 µs':>8}")
    for name in paths:
        print(f"{name:24} {statistics.median(up[name]) / gib:9.2f} "
              f"{statistics.median(down[name]) / gib:11.2f} "
              f"{percentile(lat[name], 0.5) * 1e6:8.0f} {percentile(lat[name], 0.99) * 1e6:8.0f}")
    ours = "sleepyllama-proxy"
    print(f"\nsleepyllama-proxy / systemd-socket-proxyd: "
          f"throughput up {statistics.median(up[ours]) / statistics.median(up[reference]):.2f}x, "
          f"down {statistics.median(down[ours]) / statistics.median(down[reference]):.2f}x "
          f"(target >= 1.0x); "
          f"latency p50 {percentile(lat[ours], 0.5) / percentile(lat[reference], 0.5):.2f}x, "
          f"p99 {percentile(lat[ours], 0.99) / percentile(lat[reference], 0.99):.2f}x (target <= 1.5x)")
    if lags:
        print(describe_lags("wake lag, loopback, /health 200 -> first byte", lags))
    if hinted:
        print(describe_lags("wake lag, loopback, with the ready hint", hinted))
    if lan_polled:
        print(describe_lags("wake lag, LAN-like, polled (target: median <= 100 ms, max <= 2x)",
                            lan_polled))
    if lan_hinted:
        print(describe_lags("wake lag, LAN-like, with the ready hint (target: median <= 10 ms, "
                            "max <= 2x)", lan_hinted))
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
