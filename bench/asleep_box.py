#!/usr/bin/env python3
"""A GPU box as the LAN sees it while it sleeps, for the benchmark's LAN path; run inside the
box's network namespace.

Asleep, its replies to the always-on host are dropped (a blackhole route to that address), so a
connect to it hangs as one to a suspended machine does, rather than being refused. A magic packet
on UDP 9 starts a resume of RESUME seconds (drawn anew each time), after which the route goes and
a server starts that answers /health at once; with --hint-port, the "ready" datagram goes out as
it turns ready, as the supervisor sends it. A line "sleep" on stdin sends it back to sleep.

Prints "asleep", "resuming N" and "ready N" as they happen, so the benchmark can follow.
"""

from __future__ import annotations

import argparse
import random
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

RESUME = (1.5, 2.5)  # seconds from the magic packet to the network, as real resumes vary
FAKE_SERVER = Path(__file__).resolve().parent.parent / "tests" / "fake_llama_server.py"


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


def blackhole(always_on: str, on: bool) -> None:
    subprocess.run(["ip", "route", "replace" if on else "del", "blackhole", f"{always_on}/32"],
                   check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mac", required=True)
    parser.add_argument("--host", required=True, help="the box's own address")
    parser.add_argument("--port", type=int, default=8080, help="its server's port")
    parser.add_argument("--always-on", required=True, help="the address whose replies drop")
    parser.add_argument("--ready-dir", type=Path, required=True,
                        help="where ready-N gets CLOCK_MONOTONIC as /health turns 200")
    parser.add_argument("--hint-port", type=int, help="send the ready hint to always-on:PORT")
    args = parser.parse_args()

    wake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wake.bind(("0.0.0.0", 9))
    wanted = magic_packet(args.mac)
    selector = selectors.DefaultSelector()
    selector.register(wake, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    server: subprocess.Popen[bytes] | None = None
    wakes = 0
    blackhole(args.always_on, True)
    print("asleep", flush=True)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj is sys.stdin:
                    line = sys.stdin.readline()
                    if not line:
                        return 0
                    if line.strip() == "sleep" and server is not None:
                        server.terminate()
                        server.wait()
                        server = None
                        blackhole(args.always_on, True)
                        print("asleep", flush=True)
                    continue
                data = wake.recv(2048)
                if server is not None or not data.startswith(wanted):
                    continue  # awake already: a NIC passes packets on, nothing happens
                wakes += 1
                print(f"resuming {wakes}", flush=True)
                time.sleep(random.uniform(*RESUME))
                blackhole(args.always_on, False)
                ready_file = args.ready_dir / f"ready-{wakes}"
                server = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--host", args.host,
                                           "--port", str(args.port), "--ready-file",
                                           str(ready_file)], stdout=subprocess.DEVNULL)
                while not ready_file.exists():
                    time.sleep(0.0005)
                if args.hint_port:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                        sock.sendto(b"sleepyllama-hint 1 ready bench\n",
                                    (args.always_on, args.hint_port))
                print(f"ready {wakes}", flush=True)
    finally:
        if server is not None:  # the namespace, and its route, go with the benchmark
            server.terminate()


if __name__ == "__main__":
    sys.exit(main())
