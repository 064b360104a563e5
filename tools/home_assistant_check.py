#!/usr/bin/env python3
"""A real Home Assistant against the page: what a user of Home Assistant sees of a GPU box.

Too heavy for CI (Home Assistant and its dependencies are hundreds of MB, and it installs the
MQTT integration's own requirements at its first start), so a script: it makes a virtual
environment with Home Assistant 2025.4.4 (the newest that installs on Python 3.13.0; 2026.x
needs 3.14.2), starts Debian's Mosquitto, the tests' fake llama-server behind a real proxy, and
the page with [mqtt]; onboards Home Assistant and adds its MQTT integration through its own
REST API, as its UI would; then checks, printing each step:

  - the device and its entities, found by MQTT discovery;
  - its states: not heard from, then, after a press of its Wake button in Home Assistant, a
    real magic packet, waking and awake;
  - Last wake a timestamp with its cause as attributes; Energy saved unknown until the box says;
  - unavailable within seconds of the page being killed (its last will).

  .venv/bin/python tools/home_assistant_check.py [--venv /tmp/ha-venv] [--python python3.13]

Exits 0 when every check held. Needs root only for nothing; Mosquitto from Debian's package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sleepyllama.dashboard import mqtt  # noqa: E402

from conftest import Process, ProxyRun, SleepingBackend, free_port, proxy_table, wait_for  # noqa: E402
from dashboard.test_mqtt import Broker  # noqa: E402 (the tests' helpers, found through sys.path)
from dashboard.test_program import Web  # noqa: E402

HOME_ASSISTANT = "homeassistant==2025.4.4"
CLIENT_ID = "http://sleepyllama.check/"  # Home Assistant's clients are named by a URL


def virtual_environment(path: Path, python: str) -> Path:
    """Home Assistant in a virtual environment of its own, installed once."""
    hass = path / "bin" / "hass"
    if not hass.exists():
        print(f"installing {HOME_ASSISTANT} into {path} (minutes, once)", flush=True)
        subprocess.run([python, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        HOME_ASSISTANT], check=True)
    return hass


class HomeAssistant:
    def __init__(self, hass: Path, directory: Path) -> None:
        self.port = free_port()
        config = directory / "home-assistant"
        config.mkdir()
        # the least Home Assistant that serves its REST API and onboarding
        (config / "configuration.yaml").write_text(
            f"homeassistant:\n  name: check\n  time_zone: UTC\n  unit_system: metric\n"
            f"http:\n  server_port: {self.port}\n  server_host: 127.0.0.1\n"
            "api:\nonboarding:\nconfig:\nauth:\n")
        self.process = Process([str(hass), "-c", str(config)], directory / "hass.log")
        self.token = ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, body: object = None, form: bool = False) -> object:
        data = None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url(path), data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
        return json.loads(text) if text else None

    def up(self) -> bool:
        try:
            self.call("GET", "/api/onboarding")
        except (OSError, urllib.error.HTTPError):
            return False
        return True

    def onboard(self) -> None:
        """The first user, as the onboarding page makes it; then a token for the REST API."""
        made = self.call("POST", "/api/onboarding/users", {
            "client_id": CLIENT_ID, "name": "Check", "username": "check",
            "password": "a-password-for-the-check", "language": "en"})
        assert isinstance(made, dict), made
        tokens = self.call("POST", "/auth/token", {"grant_type": "authorization_code",
                                                   "code": made["auth_code"],
                                                   "client_id": CLIENT_ID}, form=True)
        assert isinstance(tokens, dict), tokens
        self.token = tokens["access_token"]

    def add_mqtt(self, broker_port: int) -> None:
        """The MQTT integration, as its config flow in the UI adds it: discovery on (default)."""
        flow = self.call("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        assert isinstance(flow, dict), flow
        for _ in range(4):  # a menu first in some versions, then the broker's form
            if flow.get("type") == "create_entry":
                return
            if flow.get("type") == "menu":
                flow = self.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                 {"next_step_id": "broker"})
            else:
                flow = self.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                                 {"broker": "127.0.0.1", "port": broker_port})
            assert isinstance(flow, dict), flow
        raise AssertionError(f"the MQTT integration was not added: {flow}")

    def states(self) -> dict[str, dict]:
        listed = self.call("GET", "/api/states")
        assert isinstance(listed, list)
        return {state["entity_id"]: state for state in listed}

    def press(self, entity: str) -> None:
        self.call("POST", "/api/services/button/press", {"entity_id": entity})

    def stop(self) -> None:
        self.process.stop()


BOX = "gpu_box_llama"  # Home Assistant's entity ids: the device's name ("GPU box llama"), then the entity's


def entity(states: dict[str, dict], domain: str, suffix: str) -> str:
    found = [name for name in states if name.startswith(f"{domain}.{BOX}") and name.endswith(suffix)]
    assert len(found) == 1, (domain, suffix, sorted(states))
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "ha-venv")
    parser.add_argument("--python", default=shutil.which("python3.13") or "python3.13",
                        help="the Python Home Assistant runs on (3.13 for 2025.4.4)")
    args = parser.parse_args()
    hass = virtual_environment(args.venv, args.python)
    directory = Path(tempfile.mkdtemp(prefix="sleepyllama-ha-"))
    running: list = []
    try:
        broker = Broker(directory)
        running.append(broker)
        backend = SleepingBackend(directory, load_seconds=2.0)
        running.append(backend)
        state = directory / "state"
        state.mkdir()
        proxy = ProxyRun(directory, proxy_table(backend, answer_while_asleep=[]),
                         activate=False, state_directory=state)
        running.append(proxy)
        proxy.config.write_text(proxy.config.read_text()
                                + f'[mqtt]\nbroker = "127.0.0.1:{broker.port}"\n')
        web = Web(directory, proxy.config, state)
        running.append(web)
        home = HomeAssistant(hass, directory)
        running.append(home)
        wait_for(home.up, timeout=600, what="Home Assistant serving (its first start is slow)")
        home.onboard()
        home.add_mqtt(broker.port)
        print("ok: Home Assistant onboarded, its MQTT integration added", flush=True)
        host = mqtt.host_id()
        wait_for(lambda: f"sensor.{BOX}_state" in home.states(), timeout=120,
                 what="the box's entities, by discovery")
        states = home.states()
        state_sensor = entity(states, "sensor", "_state")
        awake = entity(states, "binary_sensor", "_awake")
        wake = entity(states, "button", "_wake")
        last_wake = entity(states, "sensor", "_last_wake")
        energy = entity(states, "sensor", "_energy_saved")
        print(f"ok: discovered {state_sensor}, {awake}, {wake}, {last_wake}, {energy} "
              f"(this host: {host})", flush=True)
        wait_for(lambda: home.states()[state_sensor]["state"] == "not_heard_from",
                 what="the first state")
        assert home.states()[energy]["state"] == "unknown", home.states()[energy]
        print("ok: State not_heard_from, Energy saved unknown until the box says", flush=True)
        pressed = time.monotonic()
        home.press(wake)
        wait_for(lambda: backend.packets(), timeout=30, what="a magic packet from the press")
        print(f"ok: Wake pressed in Home Assistant: a magic packet "
              f"{time.monotonic() - pressed:.2f} s later", flush=True)
        wait_for(lambda: home.states()[awake]["state"] == "on", timeout=60,
                 what="Awake on in Home Assistant")
        wait_for(lambda: home.states()[state_sensor]["state"] == "awake", timeout=30,
                 what="State awake, one of its options")
        wait_for(lambda: home.states()[last_wake]["state"] not in ("unknown", "unavailable"),
                 timeout=30, what="Last wake")
        said = home.states()[last_wake]
        assert said["attributes"].get("device_class") == "timestamp", said
        assert "home-assistant" in said["attributes"].get("cause", ""), said
        print(f"ok: awake; Last wake {said['state']} ({said['attributes'].get('cause')}: "
              f"{said['attributes'].get('outcome')})", flush=True)
        killed = time.monotonic()
        os.killpg(web.process.popen.pid, signal.SIGKILL)
        wait_for(lambda: home.states()[awake]["state"] == "unavailable", timeout=60,
                 what="unavailable once the page died (its last will)")
        print(f"ok: unavailable {time.monotonic() - killed:.2f} s after the page was killed",
              flush=True)
        errors = [line for line in (directory / "hass.log").read_text().splitlines()
                  if "ERROR" in line and "mqtt" in line.lower()]
        print(f"Home Assistant logged {len(errors)} MQTT error(s)" +
              "".join(f"\n  {line}" for line in errors[:10]), flush=True)
        return 0 if not errors else 1
    finally:
        for thing in reversed(running):
            try:
                thing.stop()
            except Exception as error:  # the rest are stopped all the same
                print(f"stopping {thing}: {error}", file=sys.stderr)
        if not os.environ.get("KEEP"):
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
