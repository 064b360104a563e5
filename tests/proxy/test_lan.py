"""The wake across a real LAN hop: two network namespaces joined by a veth pair.

"always-on" (10.77.0.1/24) runs the proxy under systemd-socket-activate and the client;
"inference" (10.77.0.2/24) runs the wake listener on UDP 9 and, once woken, the fake
llama-server. The magic packet is a real broadcast to 10.77.0.255 across the veth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FAKE_SERVER, MAC, WOL_LISTENER, Process, require, wait_for

SUBNET = "10.77.0"


class Lan:
    def __init__(self) -> None:
        suffix = str(os.getpid())
        self.proxy_ns, self.inference_ns = f"sl-always-on-{suffix}", f"sl-inference-{suffix}"
        veth_a, veth_b = f"sla{suffix}"[:15], f"slb{suffix}"[:15]
        commands = [
            ["ip", "netns", "add", self.proxy_ns],
            ["ip", "netns", "add", self.inference_ns],
            ["ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b],
            ["ip", "link", "set", veth_a, "netns", self.proxy_ns],
            ["ip", "link", "set", veth_b, "netns", self.inference_ns],
        ]
        for namespace, veth, host in ((self.proxy_ns, veth_a, 1), (self.inference_ns, veth_b, 2)):
            commands += [
                ["ip", "-n", namespace, "addr", "add", f"{SUBNET}.{host}/24",
                 "brd", f"{SUBNET}.255", "dev", veth],
                ["ip", "-n", namespace, "link", "set", veth, "up"],
                ["ip", "-n", namespace, "link", "set", "lo", "up"],
            ]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
        except subprocess.CalledProcessError:
            self.remove()
            raise

    def exec(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]

    def remove(self) -> None:
        for namespace in (self.proxy_ns, self.inference_ns):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


@pytest.fixture
def lan() -> Iterator[Lan]:
    require("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (run the tests as ./run-tests does)")
    try:
        network = Lan()
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create network namespaces here: {error.stderr.decode().strip()}")
    yield network
    network.remove()


def test_wake_across_a_veth_lan(lan: Lan, tmp_path: Path, cleanup: list) -> None:
    require("systemd-socket-activate")
    require("curl")
    ready_file = tmp_path / "ready"
    nic = Process([*lan.exec(lan.inference_ns), sys.executable, str(WOL_LISTENER), "--port", "9",
                   "--mac", MAC, "--", sys.executable, str(FAKE_SERVER), "--host", f"{SUBNET}.2",
                   "--port", "8080", "--load-seconds", "1.0", "--ready-file", str(ready_file)],
                  tmp_path / "nic.log")
    cleanup.append(nic)
    wait_for(lambda: "listening" in nic.text(), what="the wake listener")

    config = tmp_path / "sleepyllama.toml"
    config.write_text(f'[proxy.llama]\nbackend = "{SUBNET}.2:8080"\nmac = "{MAC}"\n'
                      f'broadcast = "{SUBNET}.255"\nwol_interval = "0.5s"\n')
    proxy = Process([*lan.exec(lan.proxy_ns), "systemd-socket-activate", "-l", f"{SUBNET}.1:3939",
                     sys.executable, "-m", "sleepyllama.proxy", "--config", str(config)],
                    tmp_path / "proxy.log")
    cleanup.append(proxy)
    wait_for(lambda: "Listening on" in proxy.text(), what="systemd-socket-activate")

    result = subprocess.run(
        [*lan.exec(lan.proxy_ns), "curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}",
         "-H", "Content-Type: application/json", "-d", '{"messages": []}',
         f"http://{SUBNET}.1:3939/v1/chat/completions"],
        capture_output=True, text=True)
    body, _, code = result.stdout.rpartition("\n")
    assert code == "200", result.stdout + result.stderr + proxy.text()
    assert "chat.completion" in body
    assert "packet 1 " in nic.text(), "the broadcast did not cross the veth"
    assert "ready after" in proxy.text()
