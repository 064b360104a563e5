"""Home Assistant, through its MQTT discovery: each GPU box a device with a binary sensor
(awake), sensors (state, the last wake as a timestamp with its cause, wakes today, the energy
its sleeps saved, what the last press came to) and a Wake button, and the publisher's
availability, with a last will, so that Home Assistant shows "unavailable" rather than a stale
state when the always-on host's page stops.

Discovery follows Home Assistant's documented single-component schema:
`<discovery_prefix>/<component>/<object_id>/config`, retained, object_id = unique_id, sent again
when Home Assistant says it is back (`<discovery_prefix>/status` "online"). Ids name this host
and the box, one to one (object_id()): two always-on hosts with a proxy of one name on one
broker are two devices. States are retained on `<topic>/<host>/<proxy>/...`; the button
publishes PRESS on `<topic>/<host>/<proxy>/wake/set`. What the page announced is kept, so
that a box taken out of the config, an earlier version's ids, and everything at uninstall
(--forget-home-assistant) are cleared: Home Assistant keeps no ghost device.

A press is as strong as the broker's credentials: whoever may publish there may wake the box,
as a client inside wake_from may, and, where the page holds the steering secret, keep it awake
or sleep it (those two are offered while the box is up). A command published with the retain
flag is no press (the broker would give it again at every connect, and the box would wake at
every start of the page): it is ignored, and cleared. Each press is carried out on a thread of
its own, never in paho's network thread, so a box that does not answer holds up no other
message; what it came to is published on `<topic>/<host>/<proxy>/last_command`.

discovery() and states() are pure; Publisher does the I/O through paho-mqtt.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from sleepyllama import files, history, systemd
from sleepyllama.config import MqttConfig, ProxyConfig
from sleepyllama.dashboard.boxes import Box

log = logging.getLogger(__name__)

STAY_FOR = 3 * 3600  # the Stay awake button's hours, as the page's default
MAX_PRESSES = 4  # carried out at once; one more is ignored, and said
STEERED = {"stay_awake": ("stay-awake", STAY_FOR), "sleep_now": ("sleep-now", 0)}
PUBLISH_EVERY = 1.0  # seconds between looks at the proxies' files; only changes are sent
PRESS = "PRESS"
MAX_STATE = 255  # Home Assistant keeps a sensor's state to 255 characters
CREDENTIAL = "mqtt-password"
PASSWORD_FILE = Path("/etc/sleepyllama/mqtt.password")  # install.sh's copy, root's alone


# Home Assistant's own words for the states the page knows: snake_case, and none that reads
# as Home Assistant's "unknown" (which would show as no state at all)
HA_STATES = {"asleep": "asleep", "waking": "waking", "awake": "awake",
             "did-not-wake": "did_not_wake", "unknown": "not_heard_from"}
STATE_ICONS = {"asleep": "mdi:sleep", "waking": "mdi:weather-sunset-up", "awake": "mdi:power",
               "did-not-wake": "mdi:alert-circle", "unknown": "mdi:help-circle"}


def object_id(name: str) -> str:
    """A name as Home Assistant's ids allow ([a-zA-Z0-9_-]), one to one: "gpu.1" and "gpu_1"
    must not become one id (each would overwrite the other's device)."""
    escapes = {"_": "__", ".": "_d", ":": "_c"}
    return "".join(escapes.get(c, c) if c.isascii() and (c.isalnum() or c in "-_.:")
                   else f"_x{ord(c):x}_" for c in name)


def host_id(host: str | None = None) -> str:
    """This always-on host among those that publish to one broker: its short host name."""
    return object_id((host or socket.gethostname()).split(".")[0] or "localhost")


def availability_topic(mqtt: MqttConfig, host: str | None = None) -> str:
    return f"{mqtt.topic}/{host_id(host)}/status"


def box_topic(mqtt: MqttConfig, proxy: str, host: str | None = None) -> str:
    """Where one box's states and buttons are: under this host, so that two always-on hosts
    with a proxy of one name on one broker are two boxes."""
    return f"{mqtt.topic}/{host_id(host)}/{object_id(proxy)}"


def software_version() -> str:
    try:
        return metadata.version("sleepyllama")
    except metadata.PackageNotFoundError:
        return "unknown"


def discovery(mqtt: MqttConfig, proxy: ProxyConfig, host: str,
              steering: bool = False, page_url: str = "") -> list[tuple[str, dict]]:
    """(topic, payload) of each entity of one box; with steering (the secret shared with the
    GPU box: steer.py), Stay awake 3h and Sleep now too, offered while the box is up."""
    unique_box = f"sleepyllama_{host_id(host)}_{object_id(proxy.name)}"
    base = box_topic(mqtt, proxy.name, host)
    server = proxy.kind if proxy.kind != "auto" else "LLM server"
    device = {"identifiers": [unique_box], "name": f"GPU box {proxy.name}",
              "manufacturer": "sleepyllama", "model": f"{server} at {proxy.backend}",
              "sw_version": software_version(),
              **({"configuration_url": page_url} if page_url else {})}
    available = {"topic": availability_topic(mqtt, host), "payload_available": "online",
                 "payload_not_available": "offline"}
    shared = {"availability": [available], "device": device, "origin": {"name": "sleepyllama"}}
    entities = [
        ("binary_sensor", "awake", {"name": "Awake", "state_topic": f"{base}/awake",
                                    "payload_on": "ON", "payload_off": "OFF",
                                    "device_class": "power"}),
        ("sensor", "state", {"name": "State", "state_topic": f"{base}/state",
                             "device_class": "enum", "options": list(HA_STATES.values()),
                             "icon": "mdi:sleep"}),
        ("sensor", "last_wake", {"name": "Last wake", "state_topic": f"{base}/last_wake",
                                 "device_class": "timestamp",
                                 "json_attributes_topic": f"{base}/last_wake/attributes"}),
        ("sensor", "wakes_today", {"name": "Wakes today", "state_topic": f"{base}/wakes_today",
                                   "state_class": "total_increasing", "icon": "mdi:counter"}),
        # never less between two reads (boxes.sleeps); "total", since the ledger is rolled
        ("sensor", "energy_saved", {"name": "Energy saved", "state_topic": f"{base}/energy_saved",
                                    "device_class": "energy", "state_class": "total",
                                    "unit_of_measurement": "kWh"}),
        ("sensor", "staying_awake_until", {"name": "Staying awake until",
                                           "state_topic": f"{base}/staying_awake_until",
                                           "device_class": "timestamp",
                                           "icon": "mdi:sleep-off"}),
        ("sensor", "next_prewake", {"name": "Next pre-wake",
                                    "state_topic": f"{base}/next_prewake",
                                    "device_class": "timestamp", "icon": "mdi:alarm",
                                    "json_attributes_topic": f"{base}/next_prewake/attributes"}),
        ("sensor", "last_command", {"name": "Last command",
                                    "state_topic": f"{base}/last_command",
                                    "icon": "mdi:message-reply-text"}),
        ("button", "wake", {"name": "Wake", "command_topic": f"{base}/wake/set",
                            "payload_press": PRESS, "icon": "mdi:power"}),
    ]
    if steering:
        # pressed only while the box is up: as on the page, a sleeping box has nothing to keep
        # up or to put to sleep
        up = {"availability": [available, {"topic": f"{base}/steerable",
                                           "payload_available": "ON",
                                           "payload_not_available": "OFF"}],
              "availability_mode": "all"}
        entities += [
            ("button", "stay_awake", {"name": f"Stay awake {STAY_FOR // 3600} h",
                                      "command_topic": f"{base}/stay_awake/set",
                                      "payload_press": PRESS, "icon": "mdi:sleep-off", **up}),
            ("button", "sleep_now", {"name": "Sleep now", "command_topic": f"{base}/sleep_now/set",
                                     "payload_press": PRESS, "icon": "mdi:sleep", **up}),
        ]
    found = []
    for component, key, fields in entities:
        unique = f"{unique_box}_{key}"
        found.append((f"{mqtt.discovery_prefix}/{component}/{unique}/config",
                      {**shared, **fields, "unique_id": unique}))
    return found


def states(mqtt: MqttConfig, box: Box, now: float, host: str | None = None) -> dict[str, str]:
    """Topic to payload for one box as it is now."""
    base = box_topic(mqtt, box.name, host)
    today = sum(1 for at in box.wake_times if at >= history.day_start(now))
    last = box.last_wake
    return {f"{base}/awake": "ON" if box.state == "awake" else "OFF",
            f"{base}/steerable": "ON" if box.state == "awake" else "OFF",
            f"{base}/state": HA_STATES.get(box.state, "not_heard_from"),
            # "None" is Home Assistant's unknown: no wake yet
            f"{base}/last_wake": ("None" if last is None else
                                  datetime.fromtimestamp(last.at, timezone.utc).isoformat()),
            f"{base}/last_wake/attributes": json.dumps(
                {} if last is None else {"cause": last.cause[:MAX_STATE],
                                         "outcome": last.outcome[:MAX_STATE]}),
            f"{base}/wakes_today": str(today),
            # "None" is Home Assistant's unknown: no stay-awake in effect
            f"{base}/staying_awake_until": (
                "None" if box.staying_until is None else
                datetime.fromtimestamp(box.staying_until, timezone.utc).isoformat()),
            # "None" is Home Assistant's unknown: no learned pre-wake to come (or they are off)
            f"{base}/next_prewake": (
                "None" if box.next_prewake is None else
                datetime.fromtimestamp(box.next_prewake, timezone.utc).isoformat()),
            f"{base}/next_prewake/attributes": json.dumps(
                {"cause": box.next_prewake_cause[:MAX_STATE], "mode": box.prewake,
                 "learned": "; ".join(box.learned)[:MAX_STATE]}),
            # "None" is Home Assistant's unknown: the box has not said what its sleeps save
            f"{base}/energy_saved": ("None" if box.kwh_saved_total is None
                                     else f"{box.kwh_saved_total:.3f}")}


def old_topics(mqtt: MqttConfig, proxy: str) -> list[str]:
    """What an earlier version kept retained for a box, under ids that could collide: cleared
    so that Home Assistant keeps no ghost of it."""
    box = "".join(c if c.isalnum() or c in "_-" else "_" for c in proxy)
    keys = [("binary_sensor", "awake"), ("sensor", "state"), ("sensor", "last_wake"),
            ("sensor", "wakes_today"), ("sensor", "energy_saved"), ("button", "wake"),
            ("button", "stay_awake"), ("button", "sleep_now")]
    return ([f"{mqtt.discovery_prefix}/{component}/sleepyllama_{box}_{key}/config"
             for component, key in keys]
            + [f"{mqtt.topic}/{box}/{key}" for _, key in keys[:5]])


class Unusable(Exception):
    """[mqtt] as configured cannot be used: str(error) says why, in one line."""


def password(mqtt: MqttConfig) -> str | None:
    """The broker's password: systemd's credential, else password_file, else the copy
    install.sh keeps for root's commands; None without one. Unusable where there is one that
    cannot be read (root's 0600 file, a directory)."""
    path = systemd.credential_or(CREDENTIAL, Path(mqtt.password_file) if mqtt.password_file
                                 else PASSWORD_FILE)
    try:
        return path.read_text().strip() if path is not None else None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise Unusable(f"cannot read the MQTT password {path}: {reason} (install.sh --mqtt "
                       "passes it to the unit as the credential mqtt-password)") from None


class Publisher:
    """Keeps Home Assistant's view of the boxes current, and takes its button presses. What it
    announced is kept in `announced` (a file of the page's StateDirectory), so that a box
    removed from the config, or the whole page uninstalled, leaves no ghost device behind."""

    def __init__(self, mqtt: MqttConfig, proxies: Callable[[], list[ProxyConfig] | None],
                 read: Callable[[list[ProxyConfig]], list[Box]],
                 wake: Callable[[ProxyConfig], str],
                 steer: Callable[[ProxyConfig, str, int], str] | None = None,
                 announced: Path | None = None, page_url: str = "") -> None:
        """proxies: the config's, None while it has an error; wake and steer carry out a
        press, and say what it came to."""
        import paho.mqtt.client as paho  # only where [mqtt] is configured

        self.mqtt, self.proxies, self.read, self.wake = mqtt, proxies, read, wake
        self.steer = steer  # (proxy, command, seconds): a signed command to the box
        self.announced, self.page_url = announced, page_url
        self.presses = threading.BoundedSemaphore(MAX_PRESSES)  # carried out at once
        self.sent: dict[str, str] = {}
        self.names: list[str] = []  # the proxies announced last
        self.candidate: list[str] = []  # the proxies the last round saw
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.host = socket.gethostname()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                  client_id=f"sleepyllama-{self.host}"[:64])
        if mqtt.username:
            self.client.username_pw_set(mqtt.username, password(mqtt))
        if mqtt.tls or mqtt.ca_file:
            try:
                self.client.tls_set(ca_certs=mqtt.ca_file or None)
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
                raise Unusable(f"cannot use TLS to the MQTT broker with ca_file "
                               f"{mqtt.ca_file or '(the system CAs)'}: {error}") from None
        self.client.will_set(availability_topic(mqtt, self.host), "offline", qos=1, retain=True)
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
        self.client.publish(availability_topic(self.mqtt, self.host), "offline", qos=1,
                            retain=True)
        self.client.disconnect()
        self.client.loop_stop()

    def forget(self, timeout: float = 10.0) -> int:
        """Clear everything this page ever announced (install.sh --uninstall): Home Assistant
        drops the devices. The number of topics cleared; OSError where the broker cannot be
        reached."""
        assert self.mqtt.broker is not None
        self.client.on_connect = None  # announces nothing: it takes everything back
        self.client.will_clear()
        self.client.connect(self.mqtt.broker.host, self.mqtt.broker.port, keepalive=30)
        self.client.loop_start()
        topics = self._recorded() | {availability_topic(self.mqtt, self.host)}
        for proxy in self.proxies() or []:
            topics |= set(self._topics_of(proxy)) | set(old_topics(self.mqtt, proxy.name))
        infos = [self.client.publish(topic, b"", qos=1, retain=True) for topic in sorted(topics)]
        for info in infos:
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self._record(set())
        return len(topics)

    def _connected(self, client: object, _userdata: object, _flags: object, reason: object,
                   _properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the MQTT broker %s refused us: %s", self.mqtt.broker, reason)
            return
        log.info("connected to the MQTT broker %s: announcing the boxes to Home Assistant",
                 self.mqtt.broker)
        self.client.subscribe([(f"{self.mqtt.topic}/{host_id(self.host)}/+/+/set", 1),
                               (f"{self.mqtt.discovery_prefix}/status", 1)])
        self._announce()

    def _topics_of(self, proxy: ProxyConfig) -> list[str]:
        """Every retained topic of one box's: its discovery and its states."""
        base = box_topic(self.mqtt, proxy.name, self.host)
        return ([topic for topic, _ in discovery(self.mqtt, proxy, self.host, True)]
                + [f"{base}/{key}" for key in ("awake", "steerable", "state", "last_wake",
                                               "last_wake/attributes", "wakes_today",
                                               "staying_awake_until",
                                               "energy_saved", "last_command")])

    def _announce(self) -> None:
        proxies = self.proxies()
        if proxies is None:
            return  # a config with an error: announced again once it is fixed
        for proxy in proxies:
            for topic, payload in discovery(self.mqtt, proxy, self.host, self.steer is not None,
                                            self.page_url):
                self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self.client.publish(availability_topic(self.mqtt, self.host), "online", qos=1,
                            retain=True)
        now = {topic for proxy in proxies for topic in self._topics_of(proxy)}
        gone = self._recorded() - now
        # an earlier version's ids (they could collide), and boxes no longer in the config
        gone |= {topic for proxy in proxies for topic in old_topics(self.mqtt, proxy.name)}
        for topic in sorted(gone):
            self.client.publish(topic, b"", qos=1, retain=True)
        if gone - {topic for proxy in proxies for topic in old_topics(self.mqtt, proxy.name)}:
            log.info("told Home Assistant that %d entity topic(s) of boxes no longer in the "
                     "config are gone", len(gone))
        self._record(now)
        with self.lock:
            self.names = [proxy.name for proxy in proxies]
            self.sent.clear()  # the broker may have lost what it kept: all states again

    def _recorded(self) -> set[str]:
        if self.announced is None:
            return set()
        try:
            topics = json.loads(self.announced.read_text()).get("topics")
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, AttributeError) as error:
            log.warning("%s is unreadable (%s): starting a new record", self.announced, error)
            return set()
        prefixes = (f"{self.mqtt.discovery_prefix}/", f"{self.mqtt.topic}/")
        if not isinstance(topics, list):
            return set()
        return {topic for topic in topics if isinstance(topic, str) and len(topic) < 300
                and topic.startswith(prefixes) and "#" not in topic and "+" not in topic}

    def _record(self, topics: set[str]) -> None:
        if self.announced is None:
            return
        try:
            files.write_atomic(self.announced,
                               json.dumps({"topics": sorted(topics)}).encode(), 0o600)
        except OSError as error:
            log.warning("cannot keep what was announced to Home Assistant in %s: %s",
                        self.announced, error.strerror)

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
        by_id = {object_id(proxy.name): proxy for proxy in self.proxies() or []}
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
        self.client.publish(f"{box_topic(self.mqtt, proxy.name, self.host)}/last_command",
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
        proxies = self.proxies()
        if proxies is None:
            return  # a config with an error: nothing is taken back for it (said by the page)
        names = [proxy.name for proxy in proxies]
        with self.lock:
            # a box added to or removed from the config, seen so twice in a row (a config
            # caught half written reads as one without boxes): Home Assistant learns it
            changed, self.candidate = names != self.names and names == self.candidate, names
        if changed:
            self._announce()
        for box in self.read(proxies):
            for topic, payload in states(self.mqtt, box, now, self.host).items():
                with self.lock:
                    if self.sent.get(topic) == payload:
                        continue
                    self.sent[topic] = payload
                self.client.publish(topic, payload, qos=1, retain=True)


def start(mqtt: MqttConfig, proxies: Callable[[], list[ProxyConfig] | None],
          read: Callable[[list[ProxyConfig]], list[Box]],
          wake: Callable[[ProxyConfig], str],
          steer: Callable[[ProxyConfig, str, int], str] | None = None,
          announced: Path | None = None, page_url: str = "") -> Publisher | None:
    """The publisher, started; None without [mqtt] broker. Unusable where the config cannot
    be used as it is."""
    if mqtt.broker is None:
        return None
    publisher = Publisher(mqtt, proxies, read, wake, steer, announced, page_url)
    publisher.start()
    log.info("publishing to Home Assistant through the MQTT broker %s", mqtt.broker)
    return publisher
