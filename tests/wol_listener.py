#!/usr/bin/env python3
"""Stands in for a sleeping NIC's wake logic: listens for magic packets on UDP, and on one for its
MAC starts a command (the "resume": a fake llama-server, the resume path) unless it still runs.

Prints one line per matching packet to stdout, "packet N MONOTONIC", so a test counts them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def magic_packet(mac: str) -> bytes:
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9)
    parser.add_argument("--mac", required=True)
    parser.add_argument("--once", action="store_true",
                        help="run the command on the first packet only (a box that is now awake)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND to run on wake")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.bind, args.port))
    wanted = magic_packet(args.mac)
    child: subprocess.Popen[bytes] | None = None

    def stop(*_: object) -> None:
        # os._exit, not sys.exit: an exception raised in a handler that runs inside a finalizer
        # is dropped, and the listener would go on (fake_llama_server.serve)
        if child is not None:
            child.terminate()
            child.wait()
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("listening", flush=True)
    count = 0
    while True:
        data, _sender = sock.recvfrom(2048)
        if not data.startswith(wanted):
            print(f"ignored {len(data)} bytes", flush=True)
            continue
        count += 1
        print(f"packet {count} {time.monotonic()!r}", flush=True)
        if command and (child is None or (child.poll() is not None and not args.once)):
            child = subprocess.Popen(command)  # first wake, or the box woke again after a loss


if __name__ == "__main__":
    sys.exit(main())
