"""The full story across two hosts on one virtual LAN.

Inference host: a real-systemd container on a veth pair (10.79.0.2), its model server installed
and enabled but stopped: asleep. A UDP listener on port 9 stands in for the network card's wake
logic and runs the real resume path (the system-sleep hook's "post") when a magic packet for
its MAC arrives. Always-on host: this machine (10.79.0.1), the proxy under
systemd-socket-activate. A streamed chat completion sent to the proxy comes back, and the
timeline (packet, resume, READY, first byte; all CLOCK_MONOTONIC, shared) is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import INSTALL_TREES, Container, build_install_tree, missing_requirement

from conftest import MAC, WOL_LISTENER, ProxyRun, chat_request, free_port, require, wait_for
from system.test_cycle import SERVER, install

SUBNET = "10.79.0"


@pytest.fixture
def inference_host(tmp_path: Path) -> Iterator[Container]:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    require("systemd-socket-activate")
    tree = build_install_tree(INSTALL_TREES / f"two-hosts-{os.getpid()}")
    name = f"sl2h{os.getpid() % 10000}"
    before = set(os.listdir("/sys/class/net"))
    container = Container(tmp_path, name, tree, network_veth=True)
    try:
        host_side = (set(os.listdir("/sys/class/net")) - before).pop()
        subprocess.run(["ip", "addr", "add", f"{SUBNET}.1/24", "dev", host_side], check=True)
        subprocess.run(["ip", "link", "set", host_side, "up"], check=True)
        container.run(["ip", "addr", "add", f"{SUBNET}.2/24", "brd", f"{SUBNET}.255", "dev", "host0"])
        container.run(["ip", "link", "set", "host0", "up"])
        install(container, tmp_path)
        # the server listens on the LAN; the box is asleep: enabled, not running
        container.run(["sed", "-i", 's/"--host", "127.0.0.1"/"--host", "0.0.0.0"/',
                       "/etc/sleepyllama/sleepyllama.toml"])
        container.write("/opt/fake/wol-listener", WOL_LISTENER.read_text(), mode="755")
        container.run(["systemd-run", "--unit=fake-nic", "--property=Environment=PYTHONUNBUFFERED=1",
                       "/opt/sleepyllama/bin/python", "/opt/fake/wol-listener", "--port", "9",
                       "--mac", MAC, "--once", "--", "/usr/lib/systemd/system-sleep/sleepyllama", "post",
                       "suspend"])
        wait_for(lambda: "listening" in container.journal("-u", "fake-nic"), what="the fake NIC")
        yield container
    finally:
        container.stop()
        shutil.rmtree(tree, ignore_errors=True)


def monotonic_of(pattern: str, journal: str) -> float:
    match = re.search(r"^\[\s*([\d.]+)\] .*" + pattern, journal, re.MULTILINE)
    assert match, f"not in the journal: {pattern}\n{journal[-3000:]}"
    return float(match.group(1))


def test_a_chat_completion_wakes_the_inference_host(inference_host: Container, tmp_path: Path,
                                                    cleanup: list) -> None:
    assert inference_host.show(SERVER, "ActiveState") == "inactive"
    # on the LAN address, TCP for clients and UDP for the GPU box's hints
    listen = f"{SUBNET}.1:{free_port()}"
    proxy = ProxyRun(tmp_path, f'[proxy.llama]\nbackend = "{SUBNET}.2:8080"\nmac = "{MAC}"\n'
                     f'broadcast = "{SUBNET}.255"\nwol_interval = "1s"\n', activate=False,
                     listen=listen)
    cleanup.append(proxy)
    # the GPU box tells the proxy when its server is ready ([notify] proxies)
    inference_host.run(["sh", "-c", 'cat >> "$0"', "/etc/sleepyllama/sleepyllama.toml"],
                       input=f'\n[notify]\nproxies = ["{listen}"]\n')

    sent_at = time.monotonic()
    events = []
    with socket.create_connection(proxy.address, timeout=120) as client:
        client.sendall(chat_request(stream=True))
        first_byte_at = None
        response = b""
        while chunk := client.recv(65536):
            first_byte_at = first_byte_at or time.monotonic()
            response += chunk
            events.append(time.monotonic())
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    tokens = [json.loads(line[6:])["choices"][0]["delta"]["content"]
              for line in body.split(b"\n") if line.startswith(b"data: {")]
    assert tokens == [f"token{i} " for i in range(5)]
    assert b"data: [DONE]" in body

    # the proxy forwards as soon as /health says 200 (it asks every 0.1 s); the supervisor's
    # READY follows within its own 0.5 s poll, so it may come just after the first byte
    wait_for(lambda: "llama is ready" in inference_host.journal("-u", SERVER), what="READY")
    wait_for(lambda: f"hint from {SUBNET}.2:" in proxy.log(), what="the ready hint at the proxy")
    assert "llama is ready" in proxy.log()
    journal = inference_host.journal()
    packet = monotonic_of(r"\]: packet 1 ", journal)
    resumed = monotonic_of(r"post: idle clock reset", journal)
    ready = monotonic_of(r"sleepyllama-server\[\d+\]: llama is ready", journal)
    assert sent_at < packet < resumed < first_byte_at, (sent_at, packet, resumed, first_byte_at)
    print("\ntimeline, seconds after the request was sent:")
    for when, what in sorted([(packet, "magic packet reached the inference host"),
                              (resumed, "resume path ran (hook post)"),
                              (ready, "sleepyllama-server READY (its own /health poll)"),
                              (first_byte_at, "first byte at the client"),
                              (events[-1], "last token at the client")]):
        print(f"  {when - sent_at:6.2f} s  {what}")
    print(f"  proxy: {[line for line in proxy.log().splitlines() if 'ready after' in line]}")
    sys.stdout.flush()
