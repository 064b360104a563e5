"""Home Assistant through MQTT: the discovery payloads, and a real Mosquitto broker (Debian's
mosquitto) with the page publishing to it, a Wake pressed through MQTT, and the last will."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as paho
import pytest

from sleepyllama import config
from sleepyllama.dashboard import mqtt
from sleepyllama.dashboard.boxes import Box, LastWake

from conftest import Process, free_port, wait_for
from dashboard.test_program import Web, setup

MQTT = config.parse('[mqtt]\nbroker = "127.0.0.1:1883"\n').mqtt
HOST = mqtt.host_id()  # this machine, as the page publishes under it
BASE = f"sleepyllama/{HOST}/llama"
PROXY = config.parse('[proxy."gpu.box"]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                     ).proxy("gpu.box")


def test_each_box_is_a_device_of_nine_entities_with_the_publisher_s_availability() -> None:
    found = dict(mqtt.discovery(MQTT, PROXY, "router"))
    assert sorted(found) == [f"homeassistant/{component}/sleepyllama_router_gpu_dbox_{key}/config"
                             for component, key in sorted([
                                 ("binary_sensor", "awake"), ("button", "wake"),
                                 ("sensor", "energy_saved"), ("sensor", "last_command"),
                                 ("sensor", "last_wake"), ("sensor", "next_prewake"),
                                 ("sensor", "state"), ("sensor", "staying_awake_until"),
                                 ("sensor", "wakes_today")])]
    for topic, payload in found.items():
        assert topic.split("/")[2] == payload["unique_id"]  # object_id = unique_id
        assert payload["availability"][0]["topic"] == "sleepyllama/router/status"
        assert payload["device"]["identifiers"] == ["sleepyllama_router_gpu_dbox"]
    button = found["homeassistant/button/sleepyllama_router_gpu_dbox_wake/config"]
    assert button["command_topic"] == "sleepyllama/router/gpu_dbox/wake/set"
    assert button["payload_press"] == "PRESS"
    energy = found["homeassistant/sensor/sleepyllama_router_gpu_dbox_energy_saved/config"]
    # what Home Assistant's energy dashboard takes: a total in kWh (it may go down when the
    # ledger is rolled, which "total" allows and "total_increasing" does not)
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy", "total", "kWh")


def test_states_say_what_the_page_says() -> None:
    now = 1_800_000_000.0
    box = Box("gpu.box", "10.0.0.5:8080", "waking", wake_times=[now - 86400 * 2, now - 60],
              last_wake=LastWake(now - 60, "10.0.0.2:5000 POST /v1/chat/completions" + "x" * 400,
                                 "ready after 8.1s"))
    said = mqtt.states(MQTT, box, now, "router")
    base = "sleepyllama/router/gpu_dbox"
    assert said[f"{base}/awake"] == "OFF" and said[f"{base}/steerable"] == "OFF"
    assert said[f"{base}/state"] == "waking"
    assert said[f"{base}/wakes_today"] == "1"
    # a timestamp, as Home Assistant's timestamp sensors take it; what woke it as attributes
    assert said[f"{base}/last_wake"] == "2027-01-15T07:59:00+00:00"  # now - 60
    attributes = json.loads(said[f"{base}/last_wake/attributes"])
    assert len(attributes["cause"]) == 255 and attributes["outcome"] == "ready after 8.1s"
    assert said[f"{base}/energy_saved"] == "None"  # unknown: the box never said
    box.kwh_saved_total = 12.3456
    assert mqtt.states(MQTT, box, now, "router")[f"{base}/energy_saved"] == "12.346"
    # the next learned pre-wake: a timestamp, its cause and what was learned as attributes
    assert said[f"{base}/next_prewake"] == "None"
    box.prewake, box.next_prewake = "learned", now + 3600
    box.next_prewake_cause, box.learned = "learned: weekdays about 09:00", ["weekdays about 09:00"]
    said = mqtt.states(MQTT, box, now, "router")
    assert said[f"{base}/next_prewake"] == "2027-01-15T09:00:00+00:00"
    assert json.loads(said[f"{base}/next_prewake/attributes"]) == {
        "cause": "learned: weekdays about 09:00", "mode": "learned",
        "learned": "weekdays about 09:00"}
    # Home Assistant's words: snake_case, and no state of its own ("unknown" reads as none)
    for state, word in (("did-not-wake", "did_not_wake"), ("unknown", "not_heard_from")):
        box.state = state
        assert mqtt.states(MQTT, box, now, "router")[f"{base}/state"] == word


def test_ids_never_collide() -> None:
    """Found by trying it: proxies gpu.1 and gpu_1 both became gpu_1, and two always-on hosts
    with a proxy llama on one broker became one device: each overwrote the other."""
    assert mqtt.object_id("gpu.1") != mqtt.object_id("gpu_1") != mqtt.object_id("gpu:1")
    assert mqtt.object_id("llama") == "llama"
    one = config.parse('[proxy."gpu.1"]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                       '[proxy.gpu_1]\nbackend = "10.0.0.6:8080"\nmac = "ab:cd:ef:01:23:46"\n')
    topics = [topic for proxy in one.proxies.values()
              for topic, _ in mqtt.discovery(MQTT, proxy, "router")]
    assert len(topics) == len(set(topics))
    here = {t for t, _ in mqtt.discovery(MQTT, PROXY, "router")}
    there = {t for t, _ in mqtt.discovery(MQTT, PROXY, "nas")}
    assert not here & there
    assert mqtt.box_topic(MQTT, "llama", "router") != mqtt.box_topic(MQTT, "llama", "nas")


def test_the_device_names_its_server_and_its_page() -> None:
    device = dict(mqtt.discovery(MQTT, PROXY, "router", page_url="http://router:3940/"))[
        "homeassistant/sensor/sleepyllama_router_gpu_dbox_state/config"]["device"]
    assert device["model"] == "LLM server at 10.0.0.5:8080"
    assert device["configuration_url"] == "http://router:3940/"
    assert device["sw_version"]


def test_the_password_comes_from_the_systemd_credential(tmp_path, monkeypatch) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert mqtt.password(MQTT) == "s3cret"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert mqtt.password(MQTT) is None


class Broker:
    def __init__(self, directory: Path, tls: str = "") -> None:
        """tls: mosquitto's certificate lines for its listener (TLS on it)."""
        program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(program):
            pytest.skip("mosquitto is not installed (Debian's package mosquitto; ./run-tests "
                        "installs it)")
        self.port = free_port()
        conf = directory / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\n{tls}allow_anonymous true\n"
                        "persistence false\n")
        self.process = Process([program, "-c", str(conf), "-v"], directory / "mosquitto.log")
        wait_for(lambda: "running" in self.process.text(), what="mosquitto")

    def stop(self) -> None:
        self.process.stop()


class Listener:
    """What Home Assistant would see: every message under both prefixes, the last per topic."""

    def __init__(self, port: int, ca_file: Path | None = None) -> None:
        self.seen: dict[str, str] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="listener")
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_message = self._message
        self.client.on_connect = lambda client, *_: client.subscribe(
            [("homeassistant/#", 1), ("sleepyllama/#", 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        with self.lock:
            self.seen[message.topic] = message.payload.decode()

    def get(self, topic: str) -> str | None:
        with self.lock:
            return self.seen.get(topic)

    def press(self, topic: str) -> None:
        self.client.publish(topic, "PRESS", qos=1).wait_for_publish(10)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_home_assistant_sees_the_box_presses_wake_and_learns_when_the_page_dies(
        tmp_path, cleanup) -> None:
    from host.test_steering import SECRET, Box

    broker = Broker(tmp_path)
    cleanup.append(broker)
    steered = Box(tmp_path / "steer.json", idle_exit=120)  # the box's side of the way back
    cleanup.append(steered)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "steer-secret").write_bytes(SECRET)
    backend, proxy, web = setup(tmp_path, cleanup)
    web.stop()
    proxy.config.write_text(proxy.config.read_text()
                            + f'[mqtt]\nbroker = "127.0.0.1:{broker.port}"\n'
                            + f"[steer]\nport = {steered.port}\n")
    web = Web(tmp_path, proxy.config, tmp_path / "state",
              {"CREDENTIALS_DIRECTORY": str(credentials)})
    cleanup.append(web)
    listener = Listener(broker.port)
    cleanup.append(listener)
    wait_for(lambda: listener.get(f"sleepyllama/{HOST}/status") == "online", what="availability online")
    config_topic = f"homeassistant/button/sleepyllama_{HOST}_llama_wake/config"
    wait_for(lambda: listener.get(config_topic), what="the Wake button's discovery")
    assert json.loads(listener.get(config_topic) or "{}")["command_topic"] == (
        f"{BASE}/wake/set")
    wait_for(lambda: listener.get(f"{BASE}/state") == "not_heard_from",
             what="the box's first state")
    assert not backend.packets()
    listener.press(f"{BASE}/wake/set")
    wait_for(lambda: backend.packets(), what="a magic packet from Home Assistant's press")
    wait_for(lambda: listener.get(f"{BASE}/awake") == "ON", timeout=30,
             what="awake, as Home Assistant sees it")
    # one round's states come one message after another: each is waited for, not assumed
    # (found by a CI run: awake had come, wakes_today not yet)
    wait_for(lambda: listener.get(f"{BASE}/wakes_today") == "1", what="wakes today")
    wait_for(lambda: "home-assistant" in json.loads(
        listener.get(f"{BASE}/last_wake/attributes") or "{}").get("cause", ""),
        what="the last wake's cause")
    listener.press(f"{BASE}/stay_awake/set")  # signed on to the box
    wait_for(lambda: steered.done == ["stay 10800"], what="Stay awake 3 h at the box")
    # the page dies without a word: the broker says so for it (its last will)
    os.killpg(web.process.popen.pid, signal.SIGKILL)
    wait_for(lambda: listener.get(f"sleepyllama/{HOST}/status") == "offline", what="the last will")


def test_with_the_shared_secret_stay_awake_and_sleep_now_are_buttons_too() -> None:
    found = dict(mqtt.discovery(MQTT, PROXY, "router", steering=True))
    stay = found["homeassistant/button/sleepyllama_router_gpu_dbox_stay_awake/config"]
    assert stay["command_topic"] == "sleepyllama/router/gpu_dbox/stay_awake/set"
    assert stay["name"] == "Stay awake 3 h"
    assert "homeassistant/button/sleepyllama_router_gpu_dbox_sleep_now/config" in found
    # offered while the box is up, as on the page: its own availability besides the page's
    assert stay["availability_mode"] == "all"
    assert stay["availability"][1]["topic"] == "sleepyllama/router/gpu_dbox/steerable"
    assert len(found) == 11
    assert len(mqtt.discovery(MQTT, PROXY, "router")) == 9  # no secret: no such buttons


def with_mqtt(tmp_path: Path, cleanup: list, broker_port: int, extra: str = "",
              env: dict[str, str] | None = None) -> tuple:
    """The page of dashboard/test_program.py's setup, restarted with [mqtt] (and `extra`)."""
    backend, proxy, web = setup(tmp_path, cleanup)
    web.stop()
    proxy.config.write_text(proxy.config.read_text()
                            + f'[mqtt]\nbroker = "127.0.0.1:{broker_port}"\n' + extra)
    web = Web(tmp_path, proxy.config, tmp_path / "state", env)
    cleanup.append(web)
    return backend, proxy, web


def test_a_retained_press_is_no_press_and_is_cleared(tmp_path, cleanup) -> None:
    """Found by trying it: mosquitto_pub -r ... wake/set -m PRESS woke the box at every start
    of the page and every reconnect."""
    broker = Broker(tmp_path)
    cleanup.append(broker)
    listener = Listener(broker.port)
    cleanup.append(listener)
    listener.client.publish(f"{BASE}/wake/set", "PRESS", qos=1,
                            retain=True).wait_for_publish(10)
    wait_for(lambda: listener.get(f"{BASE}/wake/set") == "PRESS", what="kept")
    backend, proxy, web = with_mqtt(tmp_path, cleanup, broker.port)
    wait_for(lambda: listener.get(f"{BASE}/wake/set") == "", what="the press cleared")
    assert "ignored a retained MQTT command" in web.process.text()
    wait_for(lambda: listener.get(f"{BASE}/state") == "not_heard_from", what="a first state")
    assert not backend.packets() and "asked" not in proxy.log()
    listener.press(f"{BASE}/wake/set")  # a press as Home Assistant sends one
    wait_for(lambda: backend.packets(), what="a magic packet from a real press")


def test_an_unreadable_password_leaves_the_page_serving_and_says_why(tmp_path, cleanup) -> None:
    """Found by trying it: a password_file of root's (0600), or a directory, killed the page
    with a traceback."""
    directory = tmp_path / "not-a-file"
    directory.mkdir()
    _backend, _proxy, web = with_mqtt(
        tmp_path, cleanup, free_port(),
        f'username = "ha"\npassword_file = "{directory}"\n')
    html = web.get("/")[2]
    assert "Home Assistant: not connected: cannot read the MQTT password" in html, html
    assert "Traceback" not in web.process.text()
    assert "not publishing to Home Assistant" in web.process.text()


def test_a_box_that_does_not_answer_holds_up_no_wake(tmp_path, cleanup) -> None:
    """Found with a real Home Assistant: a Stay awake for a box that did not answer ran in
    paho's thread for 6 s, and a Wake pressed meanwhile started 5.8 s late."""
    import socket

    from host.test_steering import SECRET

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes datagrams, never answers
    silent.bind(("127.0.0.1", 0))
    cleanup.append(SimpleNamespace(stop=silent.close))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "steer-secret").write_bytes(SECRET)
    broker = Broker(tmp_path)
    cleanup.append(broker)
    listener = Listener(broker.port)
    cleanup.append(listener)
    backend, _proxy, _web = with_mqtt(
        tmp_path, cleanup, broker.port, f"[steer]\nport = {silent.getsockname()[1]}\n",
        {"CREDENTIALS_DIRECTORY": str(credentials)})
    wait_for(lambda: listener.get(f"{BASE}/state") == "not_heard_from", what="a first state")
    listener.press(f"{BASE}/stay_awake/set")
    silent.settimeout(10)
    silent.recv(600)  # the signed command is out, and its sender waits for an answer
    listener.press(f"{BASE}/wake/set")
    wait_for(lambda: backend.packets(), what="a magic packet from the Wake press")
    # the Stay awake is still waiting (3 tries of 2 s) while the box wakes
    assert listener.get(f"{BASE}/last_command") in (
        None, "wake: asked its proxy to wake it")
    wait_for(lambda: (listener.get(f"{BASE}/last_command") or "").startswith(
        "stay awake: "), timeout=30, what="what the Stay awake came to")
    assert "did not answer" in (listener.get(f"{BASE}/last_command") or "")


def test_no_ghost_devices(tmp_path, cleanup) -> None:
    """Found with a real Home Assistant: a proxy removed from the config, or the page
    uninstalled with --purge, left its device retained on the broker, and Home Assistant kept
    it (shown available, its button pressable) for ever. An earlier version's ids too."""
    import subprocess
    import sys

    broker = Broker(tmp_path)
    cleanup.append(broker)
    listener = Listener(broker.port)
    cleanup.append(listener)
    old = "homeassistant/button/sleepyllama_llama_wake/config"  # an earlier version's id
    listener.client.publish(old, '{"name": "Wake"}', qos=1, retain=True).wait_for_publish(10)
    wait_for(lambda: listener.get(old), what="the old id kept")
    other = ('[proxy.other]\nbackend = "127.0.0.1:9"\nmac = "ab:cd:ef:01:23:46"\n')
    _backend, proxy, web = with_mqtt(tmp_path, cleanup, broker.port, other)
    other_config = f"homeassistant/button/sleepyllama_{HOST}_other_wake/config"
    llama_config = f"homeassistant/button/sleepyllama_{HOST}_llama_wake/config"
    wait_for(lambda: listener.get(other_config) and listener.get(llama_config),
             what="both boxes announced")
    wait_for(lambda: listener.get(old) == "", what="the earlier version's id cleared")
    # a config with an error (an edit under way) takes nothing back
    good = proxy.config.read_text()
    proxy.config.write_text(good + "[proxy.broken]\n")
    wait_for(lambda: web.process.text().count("[proxy.broken]") >= 3, what="rounds that read it")
    assert listener.get(other_config) and listener.get(llama_config)
    # the box taken out of the config: Home Assistant is told at once, the page running on
    proxy.config.write_text(good.replace(other, ""))
    wait_for(lambda: listener.get(other_config) == "", what="the removed box's device cleared")
    wait_for(lambda: listener.get(f"sleepyllama/{HOST}/other/state") == "",
             what="the removed box's state cleared")
    assert json.loads(listener.get(llama_config) or "{}")["name"] == "Wake"  # the other stays
    # uninstall: everything the page announced goes
    web.stop()
    forgot = subprocess.run([sys.executable, "-m", "sleepyllama.dashboard.program",
                             "--forget-home-assistant", "--config", str(proxy.config),
                             "--state-dir", str(tmp_path / "state")],
                            capture_output=True, text=True, timeout=60)
    assert forgot.returncode == 0 and "Home Assistant forgets the boxes" in forgot.stdout, (
        forgot.stdout + forgot.stderr)
    wait_for(lambda: listener.get(llama_config) == "", what="the last box's device cleared")
    wait_for(lambda: listener.get(f"sleepyllama/{HOST}/status") == "", what="its availability cleared")


def a_home_ca(cleanup: list) -> tuple[Path, str]:
    """A CA of one's own and a broker certificate for 127.0.0.1 signed by it (openssl), as a
    home lab makes them: (the CA's file, mosquitto's lines for its listener). In a directory
    of their own that mosquitto, which drops to its own user, may read."""
    import subprocess
    import tempfile

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian's package openssl; ./run-tests installs it)")
    directory = Path(tempfile.mkdtemp(prefix="sleepyllama-ca-"))
    directory.chmod(0o755)
    cleanup.append(SimpleNamespace(stop=lambda: shutil.rmtree(directory, ignore_errors=True)))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=home CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
            "broker.key", "-out", "broker.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.pem")
    for name in ("ca.pem", "broker.pem", "broker.key"):
        (directory / name).chmod(0o644)  # mosquitto drops to its own user
    return directory / "ca.pem", (f"cafile {directory / 'ca.pem'}\n"
                                  f"certfile {directory / 'broker.pem'}\n"
                                  f"keyfile {directory / 'broker.key'}\n")


def test_home_assistant_over_tls(tmp_path, cleanup) -> None:
    """MQTT in clear carries the broker's password and every press: with [mqtt] ca_file the
    page speaks TLS to the broker, checked against the home CA."""
    ca, lines = a_home_ca(cleanup)
    broker = Broker(tmp_path, lines)
    cleanup.append(broker)
    listener = Listener(broker.port, ca)
    cleanup.append(listener)
    backend, _proxy, _web = with_mqtt(tmp_path, cleanup, broker.port, f'ca_file = "{ca}"\n')
    wait_for(lambda: listener.get(f"sleepyllama/{HOST}/status") == "online",
             what="the page online, over TLS")
    listener.press(f"{BASE}/wake/set")
    wait_for(lambda: backend.packets(), what="a magic packet from a press over TLS")


def test_a_ca_file_that_cannot_be_read_leaves_the_page_serving(tmp_path, cleanup) -> None:
    _backend, _proxy, web = with_mqtt(tmp_path, cleanup, free_port(),
                                      f'ca_file = "{tmp_path / "missing.pem"}"\n')
    assert "Home Assistant: not connected: cannot use TLS" in web.get("/")[2]
