#!/usr/bin/env python3
"""How long after its server can answer does sleepyllama-server say READY=1? Every wake of the
box waits for it: `systemctl start`, the servers' start after a resume, the proxy's "ready".

The supervisor runs as under systemd (NOTIFY_SOCKET is this script's socket), side by side in
one run as it is now (the kind's own "ready" line, 20 ms polls in between) and as it was before
(a 0.5 s poll, lines ignored), over the tests' fake llama-server with several load times (its
--ready-file says when /health turned 200) and over the real llama-server that ./run-tests
builds (a 1 ms poll of its /health from here says when). Lag = READY=1 received - /health 200,
both CLOCK_MONOTONIC.

  python bench/ready_lag.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fake_llama_server.py"
CACHE = ROOT / ".cache" / "llama-server-0.3.36"
LOAD_SECONDS = (1.13, 1.71, 2.37)  # the stand-in load times
# the supervisor as it was before the ready lines: polls 0.5 s apart, lines ignored
BEFORE = ("import sys; from sleepyllama.host import supervisor as s; s.LOADING_POLL = 0.5; "
          "s.Supervisor._heard = lambda self, line: self.placement.feed(line); "
          "sys.exit(s.main(sys.argv[1:]))")
NOW = "import sys; from sleepyllama.host import supervisor as s; sys.exit(s.main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_200(port: int, stop: threading.Event, found: list[float]) -> None:
    """Poll /health every millisecond; the moment it first answers 200."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                if answer.status == 200:
                    found.append(time.monotonic())
                    return
        except OSError:
            pass
        time.sleep(0.001)


def run_once(variant: str, command: list[str], directory: Path, port: int,
             ready_file: Path | None) -> float:
    """Lag in ms from /health 200 to READY=1, for one start of the supervisor."""
    config = directory / "sleepyllama.toml"
    args = ", ".join(f'"{arg}"' for arg in command)
    config.write_text(f'[server.llama]\ncommand = [{args}]\nactivity = "llama-server"\n')
    notify_path = directory / "notify"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(120)
    stop, seen = threading.Event(), []
    poller = None
    if ready_file is None:
        poller = threading.Thread(target=first_200, args=(port, stop, seen), daemon=True)
        poller.start()
    process = subprocess.Popen(
        [sys.executable, "-c", variant, "--config", str(config), "--instance", "llama"],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            message = notify.recv(4096).decode()
            if "READY=1" in message:
                ready_received = time.monotonic()
                break
        if poller is not None:
            poller.join(10)
            healthy = seen[0]
        else:
            healthy = float(ready_file.read_text())
        return 1000 * (ready_received - healthy)
    finally:
        stop.set()
        process.terminate()
        process.wait(30)
        notify.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = Path(os.environ.get("LLAMA_SERVER", CACHE / "llama-server"))
    model = Path(os.environ.get("LLAMA_MODEL", CACHE / "tiny.gguf"))
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for _round in range(args.rounds):
            cases = []
            for load in LOAD_SECONDS:
                port = free_port()
                ready_file = directory / "ready"
                cases.append((f"fake, {load} s load", [sys.executable, str(FAKE_SERVER), "--port",
                              str(port), "--metrics", "--load-seconds", str(load),
                              "--ready-file", str(ready_file)], port, ready_file))
            if binary.exists() and model.exists():
                port = free_port()
                cases.append(("real llama-server", [str(binary), "-m", str(model), "--host",
                              "127.0.0.1", "--port", str(port), "--metrics", "-c", "256"],
                              port, None))
            for name, command, port, ready_file in cases:
                for label, variant in (("now", NOW), ("before", BEFORE)):
                    if ready_file is not None:
                        ready_file.unlink(missing_ok=True)
                    lag = run_once(variant, command, directory, port, ready_file)
                    results.setdefault((name, label), []).append(lag)
    print(f"READY=1 after /health 200, ms ({args.rounds} rounds; now = the kind's ready line and "
          "20 ms polls, before = 0.5 s polls)")
    for (name, label), lags in results.items():
        print(f"  {name:22} {label:6}  median {statistics.median(lags):6.1f}  "
              f"range {min(lags):6.1f} .. {max(lags):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
