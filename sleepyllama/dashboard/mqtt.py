"""Home Assistant, through its MQTT discovery: each GPU box a device with a binary sensor
(awake), sensors (state, the last wake's cause, wakes today, the energy its sleeps saved) and a
Wake button, and the publisher's availability, with a last will, so that Home Assistant shows
"unavailable" rather than a stale state when the always-on host's page stops.

Discovery follows Home Assistant's documented single-component schema:
`<discovery_prefix>/<component>/<object_id>/config`, retained, object_id = unique_id, sent again
when Home Assistant says it is back (`<discovery_prefix>/status` "online"). States are retained
on `<topic>/<proxy>/...`; the button publishes PRESS on `<topic>/<proxy>/wake/set`. A press is
as strong as the broker's credentials: whoever may publish there may wake the box, as a client
inside wake_from may, and, where the page holds the steering secret, keep it awake or sleep it.
A command published with the retain flag is no press (the broker would give it again at every
connect, and the box would wake at every start of the page): it is ignored, and cleared.
Each press is carried out on a thread of its own, never in paho's network thread, so a box
that does not answer holds up no other message; what it came to is published on
`<topic>/<proxy>/last_command`.

discovery() and states() are pure; Publisher does the I/O through paho-mqtt.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sleepyllama import history, systemd
from sleepyllama.config import MqttConfig, ProxyConfig
from sleepyllama.dashboard.boxes import Box
from sleepyllama.proxy.live import STATES

log = logging.getLogger(__name__)

STAY_FOR = 3 * 3600  # the Stay awake button's hours, as the page's default
MAX_PRESSES = 4  # carried out at once; one more is ignored, and said
STEERED = {"stay_awake": ("stay-awake", STAY_FOR), "sleep_now": ("sleep-now", 0)}
PUBLISH_EVERY = 1.0  # seconds between looks at the proxies' files; only changes are sent
PRESS = "PRESS"
MAX_STATE = 255  # Home Assistant keeps a sensor's state to 255 characters
CREDENTIAL = "mqtt-password"


def object_id(proxy: str) -> str:
    """A proxy's name as Home Assistant's ids allow ([a-zA-Z0-9_-])."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in proxy)


def availability_topic(mqtt: MqttConfig) -> str:
    return f"{mqtt.topic}/status"


def discovery(mqtt: MqttConfig, proxy: ProxyConfig, host: str,
              steering: bool = False) -> list[tuple[str, dict]]:
    """(topic, payload) of each entity of one box; with steering (the secret shared with the
    GPU box: steer.py), Stay awake 3h and Sleep now too."""
    box_id = object_id(proxy.name)
    base = f"{mqtt.topic}/{box_id}"
    device = {"identifiers": [f"sleepyllama_{box_id}"], "name": f"GPU box {proxy.name}",
              "manufacturer": "sleepyllama", "model": f"woken through {host}"}
    shared = {"availability_topic": availability_topic(mqtt), "payload_available": "online",
              "payload_not_available": "offline", "device": device,
              "origin": {"name": "sleepyllama"}}
    entities = [
        ("binary_sensor", "awake", {"name": "Awake", "state_topic": f"{base}/awake",
                                    "payload_on": "ON", "payload_off": "OFF",
                                    "device_class": "power"}),
        ("sensor", "state", {"name": "State", "state_topic": f"{base}/state",
                             "device_class": "enum",
                             "options": list(STATES)}),
        ("sensor", "last_wake", {"name": "Last wake", "state_topic": f"{base}/last_wake",
                                 "icon": "mdi:alarm"}),
        ("sensor", "wakes_today", {"name": "Wakes today", "state_topic": f"{base}/wakes_today",
                                   "state_class": "total_increasing", "icon": "mdi:counter"}),
        # a total that may go down (the ledger is rolled): "total", not "total_increasing"
        ("sensor", "energy_saved", {"name": "Energy saved", "state_topic": f"{base}/energy_saved",
                                    "device_class": "energy", "state_class": "total",
                                    "unit_of_measurement": "kWh"}),
        ("sensor", "last_command", {"name": "Last command",
                                    "state_topic": f"{base}/last_command",
                                    "icon": "mdi:message-reply-text"}),
        ("button", "wake", {"name": "Wake", "command_topic": f"{base}/wake/set",
                            "payload_press": PRESS, "icon": "mdi:power"}),
    ]
    if steering:
        entities += [
            ("button", "stay_awake", {"name": f"Stay awake {STAY_FOR // 3600} h",
                                      "command_topic": f"{base}/stay_awake/set",
                                      "payload_press": PRESS, "icon": "mdi:sleep-off"}),
            ("button", "sleep_now", {"name": "Sleep now", "command_topic": f"{base}/sleep_now/set",
                                     "payload_press": PRESS, "icon": "mdi:sleep"}),
        ]
    found = []
    for component, key, fields in entities:
        unique = f"sleepyllama_{box_id}_{key}"
        found.append((f"{mqtt.discovery_prefix}/{component}/{unique}/config",
                      {**fields, "unique_id": unique, **shared}))
    return found


def states(mqtt: MqttConfig, box: Box, now: float) -> dict[str, str]:
    """Topic to payload for one box as it is now."""
    base = f"{mqtt.topic}/{object_id(box.name)}"
    today = sum(1 for at in box.wake_times if at >= history.day_start(now))
    cause = (f"{box.last_wake.cause}: {box.last_wake.outcome}" if box.last_wake else "none yet")
    return {f"{base}/awake": "ON" if box.state == "awake" else "OFF",
            f"{base}/state": box.state,
            f"{base}/last_wake": cause[:MAX_STATE],
            f"{base}/wakes_today": str(today),
            # "None" is Home Assistant's unknown: the box has not said what its sleeps save
            f"{base}/energy_saved": ("None" if box.kwh_saved_total is None
                                     else f"{box.kwh_saved_total:.3f}")}


class Unusable(Exception):
    """[mqtt] as configured cannot be used: str(error) says why, in one line."""


def password(mqtt: MqttConfig) -> str | None:
    """The broker's password: systemd's credential, else password_file; None without one.
    Unusable where there is one that cannot be read (root's 0600 file, a directory)."""
    path = systemd.credential_or(CREDENTIAL, Path(mqtt.password_file) if mqtt.password_file
                                 else None)
    try:
        return path.read_text().strip() if path is not None else None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise Unusable(f"cannot read the MQTT password {path}: {reason} (install.sh --mqtt "
                       "passes it to the unit as the credential mqtt-password)") from None


class Publisher:
    """Keeps Home Assistant's view of the boxes current, and takes its button presses."""

    def __init__(self, mqtt: MqttConfig, proxies: Callable[[], list[ProxyConfig]],
                 read: Callable[[list[ProxyConfig]], list[Box]],
                 wake: Callable[[ProxyConfig], str],
                 steer: Callable[[ProxyConfig, str, int], str] | None = None) -> None:
        """wake and steer carry out a press, and say what it came to."""
        import paho.mqtt.client as paho  # only where [mqtt] is configured

        self.mqtt, self.proxies, self.read, self.wake = mqtt, proxies, read, wake
        self.steer = steer  # (proxy, command, seconds): a signed command to the box
        self.presses = threading.BoundedSemaphore(MAX_PRESSES)  # carried out at once
        self.sent: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.host = socket.gethostname()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=f"sleepyllama-{self.host}"[:64])
        if mqtt.username:
            self.client.username_pw_set(mqtt.username, password(mqtt))
        self.client.will_set(availability_topic(mqtt), "offline", qos=1, retain=True)
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 30)

    def start(self) -> None:
        assert self.mqtt.broker is not None
        self.client.connect_async(self.mqtt.broker.host, self.mqtt.broker.port, keepalive=30)
        self.client.loop_start()
        threading.Thread(target=self._publish_states, name="mqtt-states", daemon=True).start()

    def stop(self) -> None:
        """A clean stop says "offline" itself (the will covers a crash)."""
        self.stopped.set()
        self.client.publish(availability_topic(self.mqtt), "offline", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def _connected(self, client: object, _userdata: object, _flags: object, reason: object,
                   _properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the MQTT broker %s refused us: %s", self.mqtt.broker, reason)
            return
        log.info("connected to the MQTT broker %s: announcing %d box(es) to Home Assistant",
                 self.mqtt.broker, len(self.proxies()))
        self.client.subscribe([(f"{self.mqtt.topic}/+/+/set", 1),
                               (f"{self.mqtt.discovery_prefix}/status", 1)])
        self._announce()
        with self.lock:
            self.sent.clear()  # the broker may have lost what it kept: all states again

    def _announce(self) -> None:
        for proxy in self.proxies():
            for topic, payload in discovery(self.mqtt, proxy, self.host, self.steer is not None):
                self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self.client.publish(availability_topic(self.mqtt), "online", qos=1, retain=True)

    def _message(self, _client: object, _userdata: object, message: object) -> None:
        topic = getattr(message, "topic", "")
        payload = bytes(getattr(message, "payload", b""))[:64].decode("utf-8", "replace")
        if topic == f"{self.mqtt.discovery_prefix}/status":
            if payload == "online":  # Home Assistant restarted: it asks for discovery again
                self._announce()
            return
        if getattr(message, "retain", False):
            if payload:  # an empty retained payload is the broker's way of clearing one
                log.warning("ignored a retained MQTT command on %s (it would fire at every "
                            "connect): cleared it", topic)
                self.client.publish(topic, b"", qos=1, retain=True)
            return
        by_id = {object_id(proxy.name): proxy for proxy in self.proxies()}
        parts = topic.split("/")
        proxy = by_id.get(parts[-3]) if len(parts) >= 3 else None
        button = parts[-2] if len(parts) >= 3 else ""
        if (proxy is None or payload != PRESS or button not in ("wake", *STEERED)
                or (button in STEERED and self.steer is None)):
            log.info("ignored an MQTT command on %s: %r", topic, payload[:20])
            return
        if not self.presses.acquire(blocking=False):
            log.warning("ignored Home Assistant's %s for %s: %d presses are being carried out "
                        "already", button, proxy.name, MAX_PRESSES)
            return
        threading.Thread(target=self._carry_out, args=(proxy, button), name="mqtt-press",
                         daemon=True).start()

    def _carry_out(self, proxy: ProxyConfig, button: str) -> None:
        """One press, off paho's thread and beside any other: a box that does not answer a
        signed command (6 s) holds up no Wake and no state."""
        log.info("Home Assistant pressed %s for %s", button, proxy.name)
        try:
            said = (self.wake(proxy) if button == "wake" or self.steer is None
                    else self.steer(proxy, *STEERED[button]))
        except Exception as error:  # said, and the page goes on
            log.exception("Home Assistant's %s for %s failed", button, proxy.name)
            said = f"failed: {error}"
        finally:
            self.presses.release()
        log.info("Home Assistant's %s for %s: %s", button, proxy.name, said)
        self.client.publish(f"{self.mqtt.topic}/{object_id(proxy.name)}/last_command",
                            f"{button.replace('_', ' ')}: {said}"[:MAX_STATE], qos=1,
                            retain=True)

    def _publish_states(self) -> None:
        while not self.stopped.wait(PUBLISH_EVERY):
            try:
                self.publish_once(time.time())
            except Exception:  # the page goes on; the next round tries again
                log.exception("publishing the boxes' states to MQTT failed")

    def publish_once(self, now: float) -> None:
        if not self.client.is_connected():
            return
        for box in self.read(self.proxies()):
            for topic, payload in states(self.mqtt, box, now).items():
                with self.lock:
                    if self.sent.get(topic) == payload:
                        continue
                    self.sent[topic] = payload
                self.client.publish(topic, payload, qos=1, retain=True)


def start(mqtt: MqttConfig, proxies: Callable[[], list[ProxyConfig]],
          read: Callable[[list[ProxyConfig]], list[Box]],
          wake: Callable[[ProxyConfig], str],
          steer: Callable[[ProxyConfig, str, int], str] | None = None) -> Publisher | None:
    """The publisher, started; None without [mqtt] broker. Unusable where the config cannot
    be used as it is."""
    if mqtt.broker is None:
        return None
    publisher = Publisher(mqtt, proxies, read, wake, steer)
    publisher.start()
    log.info("publishing to Home Assistant through the MQTT broker %s", mqtt.broker)
    return publisher
