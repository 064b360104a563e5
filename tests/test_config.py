from pathlib import Path

import pytest

from sleepyllama import config
from sleepyllama.config import Address, ConfigError
from sleepyllama.proxy.probe import ready_urls
from sleepyllama.words import format_duration

PATH = Path("/etc/sleepyllama/sleepyllama.toml")


def parse(text: str) -> config.Config:
    return config.parse(text, PATH)


def test_proxy_table_with_defaults() -> None:
    proxy = parse('[proxy.llama]\nbackend = "192.168.1.50:8080"\nmac = "AB-CD-EF-01-23-45"\n').proxy(
        "llama")
    assert proxy.backend == Address("192.168.1.50", 8080)
    assert proxy.mac == "ab:cd:ef:01:23:45"
    # until the backend answers, readiness is any kind's own ready check (proxy/probe.py)
    assert (proxy.health_url, proxy.kind) == (None, "auto")
    assert ready_urls(proxy) == ["http://192.168.1.50:8080/health",
                                 "http://192.168.1.50:8080/api/version"]
    assert {"GET /v1/models", "GET /api/tags", "GET /props"} <= set(proxy.answer_while_asleep or ())
    assert (proxy.broadcast, proxy.wol_port, proxy.wol_interval) == ("255.255.255.255", 9, 3.0)
    assert (proxy.wake_timeout, proxy.max_connections, proxy.exit_idle) == (180.0, 512, None)


def test_ipv6_backend_and_every_key() -> None:
    proxy = parse("""
[proxy.x]
backend = "[fd00::50]:8080"
mac = "abcdef012345"
health_url = ""
broadcast = "192.168.1.255"
wol_port = 7
wol_source = "192.168.1.2"
wol_interval = "500ms"
wake_timeout = "1m30s"
wake_command = ["/usr/bin/curl", "-s", "http://plug/on"]
max_connections = 10
exit_idle = "15m"
""").proxy("x")
    assert str(proxy.backend) == "[fd00::50]:8080"
    assert proxy.health_url == ""
    assert proxy.wol_interval == 0.5 and proxy.wake_timeout == 90 and proxy.exit_idle == 900
    assert proxy.wake_command == ("/usr/bin/curl", "-s", "http://plug/on")


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90), (2.5, 2.5), ("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400),
    ("250ms", 0.25),
])
def test_durations(value: object, seconds: float) -> None:
    assert config.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1 hour", "-5", True, "", "5x", [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(value)


def test_format_duration_round_trips() -> None:
    for seconds in (180, 5400, 2.5, 45, 86400):
        assert config.parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[proxy.a]\nmac = "ab:cd:ef:01:23:45"\n', "backend", "is required"),
    ('[proxy.a]\nbackend = "box"\nmac = "ab:cd:ef:01:23:45"\n', "backend", "HOST:PORT"),
    ('[proxy.a]\nbackend = "h:99999"\nmac = "ab:cd:ef:01:23:45"\n', "backend", "out of range"),
    ('[proxy.a]\nbackend = "[nope]:80"\nmac = "ab:cd:ef:01:23:45"\n', "backend", "IPv6"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23"\n', "mac", "MAC address"),
    ('[proxy.a]\nbackend = "h:80"\n', "mac", "is required"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nwake_timeout = "soon"\n',
     "wake_timeout", "duration"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nbrodcast = "1.2.3.4"\n',
     "brodcast", "unknown key"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nbroadcast = "1.2.3"\n',
     "broadcast", "IP address"),
    ('[proxy.a]\nbackend = "h:80"\nwake_command = "curl http://plug/on"\n', "wake_command",
     "list of arguments"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nhealth_url = "ftp://x"\n',
     "health_url", "http://"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nmax_connections = 0\n',
     "max_connections", "at least 1"),
    # TOML allows nan and inf: a nan wake_timeout never answered a client, a nan wol_interval
    # sent one packet per process life
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nwake_timeout = nan\n',
     "wake_timeout", "duration"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nwol_interval = nan\n',
     "wol_interval", "duration"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nwake_timeout = inf\n',
     "wake_timeout", "duration"),
    # a packet every 3 ms floods the LAN
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nwol_interval = "3ms"\n',
     "wol_interval", "at least 0.5s"),
    ('[proxy.a]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\nkind = "llama"\n',
     "kind", "'llama-server'"),
])
def test_errors_name_file_table_and_key(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"{PATH}: [proxy.a] {key}: ")
    assert words in message
    assert "\n" not in message


def test_unknown_table_and_missing_instance() -> None:
    with pytest.raises(ConfigError, match=r"\[prxy\]: unknown table"):
        parse('[prxy.a]\nbackend = "h:80"\n')
    loaded = parse('[proxy.llama]\nbackend = "h:80"\nmac = "ab:cd:ef:01:23:45"\n')
    with pytest.raises(ConfigError, match=r"no \[proxy.whisper\] table \(it has \[proxy.llama\]\)"):
        loaded.proxy("whisper")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse("[proxy.a\n")
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "absent.toml")


def test_server_kind_and_health_url_come_from_the_command() -> None:
    loaded = parse('[server.a]\ncommand = ["/usr/bin/ollama", "serve"]\n'
                   '[server.b]\ncommand = ["llama-server", "--port", "9000", "--host", "0.0.0.0"]\n'
                   '[server.c]\ncommand = ["whisper-server"]\nhealth_url = "http://127.0.0.1:1/h"\n')
    assert (loaded.server("a").activity, loaded.server("a").health_url) == (
        "ollama", "http://127.0.0.1:11434/api/version")
    assert (loaded.server("b").activity, loaded.server("b").health_url) == (
        "llama-server", "http://127.0.0.1:9000/health")
    assert (loaded.server("c").activity, loaded.server("c").health_url) == (
        "none", "http://127.0.0.1:1/h")


@pytest.mark.parametrize(("text", "key"), [
    ("[idle]\ntimeout = inf\n", "timeout"),
    ("[idle]\ntimeout = nan\n", "timeout"),
    ("[energy]\nbase_watts = nan\n", "base_watts"),
    ("[energy]\nprice_per_kwh = inf\n", "price_per_kwh"),
])
def test_nan_and_inf_are_refused_everywhere(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"\] {key}: "):
        parse(text)


def test_idle_action_is_one_logind_knows() -> None:
    assert parse("[idle]\n").idle.action == "suspend"
    assert parse('[idle]\naction = "poweroff"\n').idle.action == "poweroff"
    with pytest.raises(ConfigError) as caught:
        parse('[idle]\naction = "shutdown"\n')
    assert "[idle] action: expected one of 'suspend', 'hibernate', 'suspend-then-hibernate', " \
        "'poweroff', not 'shutdown'" in str(caught.value)


def test_a_proxy_serves_on_when_another_table_has_an_error(tmp_path: Path) -> None:
    """A typo in [proxy.llama] made a restarted sleepyllama-proxy@ollama answer every client
    503 for the llama table's error."""
    from sleepyllama.config import load_proxy

    path = tmp_path / "sleepyllama.toml"
    path.write_text('[proxy.llama]\nbackend = "box:8080"\nmac = "ab:cd:ef:01:23:45"\n'
                    'wake_timout = "3m"\n'
                    '[proxy.ollama]\nbackend = "box:11434"\nmac = "ab:cd:ef:01:23:45"\n')
    ollama, elsewhere = load_proxy(path, "ollama")
    assert ollama.backend.port == 11434
    assert "[proxy.llama] wake_timout: unknown key" in elsewhere
    with pytest.raises(ConfigError, match=r"\[proxy.llama\] wake_timout"):
        load_proxy(path, "llama")  # its own table's error stops it, as before
    path.write_text(path.read_text() + "[idle]\ntimeout = nan\n")
    with pytest.raises(ConfigError):
        load_proxy(path, None)  # two tables and no --instance: which one is not known
    right = tmp_path / "right.toml"
    right.write_text('[proxy.llama]\nbackend = "box:8080"\nmac = "ab:cd:ef:01:23:45"\n')
    assert load_proxy(right, None)[1] == ""
    path.write_text("[proxy.llama\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_proxy(path, "llama")


def test_web_names_and_steer_from() -> None:
    parsed = config.parse('[web]\nnames = ["LLM.Home.arpa.", "10.0.0.5"]\n'
                          'steer_from = ["192.168.1.0/24"]\n')
    assert parsed.web.names == ("llm.home.arpa", "10.0.0.5")
    assert [str(n) for n in parsed.web.steer_from or ()] == ["192.168.1.0/24"]
    assert config.parse("").web == config.WebConfig(names=(), steer_from=None)
    for bad in ('names = ["http://llm.home"]', 'names = "llm.home"', 'names = ["a b"]',
                'steer_from = ["nowhere"]', 'name = ["llm.home"]'):
        with pytest.raises(ConfigError, match=r"\[web\]"):
            config.parse(f"[web]\n{bad}\n")


def test_mqtt_tls_and_its_ca() -> None:
    parsed = config.parse('[mqtt]\nbroker = "10.0.0.9:8883"\nca_file = "/etc/sleepyllama/mqtt-ca.pem"\n')
    assert parsed.mqtt.ca_file == "/etc/sleepyllama/mqtt-ca.pem" and not parsed.mqtt.tls
    assert config.parse('[mqtt]\ntls = true\n').mqtt.tls
    for bad in ('ca_file = "ca.pem"', 'tls = "yes"'):
        with pytest.raises(ConfigError, match=r"\[mqtt\]"):
            config.parse(f"[mqtt]\n{bad}\n")


PROXY = '[proxy.t]\nbackend = "10.0.0.5:8080"\nmac = "ab:cd:ef:01:23:45"\n'


def test_learned_pre_wakes_are_off_unless_asked_for() -> None:
    assert parse(PROXY).proxy("t").prewake == "off"
    asked = parse(PROXY + 'prewake = "learned"\nprewake_never = ["Sat,Sun 00:00..10:00"]\n'
                  ).proxy("t")
    assert asked.prewake == "learned"
    assert [window.text for window in asked.prewake_never] == ["Sat,Sun 00:00..10:00"]


@pytest.mark.parametrize("lines, says", [
    ('prewake = "always"', r"\[proxy.t\] prewake: expected one of 'off', 'learned'"),
    ('prewake_never = "22:00..07:00"', r"\[proxy.t\] prewake_never: expected a list"),
    ('prewake_never = ["22:00..07:00"]', r"\[proxy.t\] prewake_never: .* ends before it starts"),
    ('prewake = "learned"\nexit_idle = "10m"',
     r"\[proxy.t\] prewake: a learned pre-wake needs a proxy that runs"),
])
def test_learned_pre_wakes_that_cannot_be_say_why(lines: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse(PROXY + lines + "\n")
