"""install.sh in a real-systemd container, as a user runs it: both roles on one host, the
proxy serving through its hardened unit, `sleepyllama status`, a second run that changes
nothing, a user's own table kept, --uninstall and --purge; and bad arguments that change nothing.

pip runs offline from a wheelhouse built once on the host (PIP_NO_INDEX, PIP_FIND_LINKS): the
container's /etc is empty, and a test must not depend on the network anyway.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import (
    INSTALL_TREES,
    REPO,
    Container,
    build_wheelhouse,
    give_a_wakeable_card,
    missing_requirement,
)

from sleepyllama.status import RESTART_HINT

from conftest import FAKE_SERVER, wait_for

INSTALL = str(REPO / "install.sh")
# what install.sh writes, to compare between runs
WATCHED = ["/etc/systemd/system", "/etc/sleepyllama", "/usr/lib/systemd/system-sleep",
           "/usr/local/bin/sleepyllama", "/opt/sleepyllama/.source-hash"]
# while the proxy restarts: a complete GET /health every 50 ms for 14 s, each answer's status
# line ("" for nothing, or the error) in /run/restart-clients.json
RESTART_CLIENTS = """
import json, socket, threading, time
answers = []
def one():
    try:
        with socket.create_connection(("127.0.0.1", 3939), timeout=60) as sock:
            sock.sendall(b"GET /health HTTP/1.1\\r\\nHost: llama\\r\\nConnection: close\\r\\n\\r\\n")
            got = b""
            while data := sock.recv(65536):
                got += data
        answers.append(got[:12].decode(errors="replace"))
    except OSError as error:
        answers.append(str(error))
clients, stop = [], time.monotonic() + 14
while time.monotonic() < stop:
    clients.append(threading.Thread(target=one))
    clients[-1].start()
    time.sleep(0.05)
for client in clients:
    client.join(90)
open("/run/restart-clients.json", "w").write(json.dumps(answers))
"""
SECRET_FILE = "/etc/steer-secret-of-the-user"  # the same file on both hosts, as README says
SERVER_ARGS = ["server", "--name", "llama", "--idle-timeout", "45m", "--steer-secret-file",
               SECRET_FILE, "--", "/opt/fake/llama-server",
               "--host", "127.0.0.1", "--port", "8080", "--load-seconds", "1",
               "--tokens", "40", "--token-delay", "0.25"]
PROXY_ARGS = ["proxy", "--name", "llama", "--listen", "127.0.0.1:3939",
              "--backend", "127.0.0.1:8080", "--mac", "ab:cd:ef:01:23:45", "--web", "127.0.0.1:3940",
              "--mqtt", "127.0.0.1:1883", "--mqtt-user", "ha", "--mqtt-password-file",
              "/etc/mqtt-password-of-the-user", "--steer-secret-file", SECRET_FILE]


@pytest.fixture(scope="module")
def wheelhouse() -> Iterator[Path]:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    yield build_wheelhouse(INSTALL_TREES / f"wheels-{os.getpid()}")
    shutil.rmtree(INSTALL_TREES / f"wheels-{os.getpid()}", ignore_errors=True)


@pytest.fixture
def box(tmp_path: Path, wheelhouse: Path) -> Iterator[Container]:
    container = Container(tmp_path, f"sl-install-{os.getpid()}", binds=(f"--bind-ro={wheelhouse}",))
    container.write("/opt/fake/llama-server", FAKE_SERVER.read_text(), mode="755")
    models = FAKE_SERVER.parent / "data" / "llama-server" / "v1-models.json"
    container.write("/opt/fake/data/llama-server/v1-models.json", models.read_text())
    smi = container.local_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$1\" in --query-compute-apps=*) ;; *) echo '0, P8, 0';; esac\n")
    smi.chmod(0o755)
    give_a_wakeable_card(container)
    container.wheelhouse = wheelhouse  # type: ignore[attr-defined]
    yield container
    container.stop()


def install(box: Container, *args: str, check: bool = True):
    environment = ["env", "PIP_NO_INDEX=1", f"PIP_FIND_LINKS={box.wheelhouse}",  # type: ignore[attr-defined]
                   "PIP_CONFIG_FILE=/dev/null", "PIP_CERT=", "PIP_CONSTRAINT="]
    return box.run([*environment, INSTALL, *args], check=check, timeout=300)


def snapshot(box: Container) -> str:
    """Every file install.sh writes, with its hash and mtime."""
    return box.run(["sh", "-c", "find \"$@\" -xdev \\( -type f -o -type l \\) -printf '%p %T@ ' "
                    "-exec sh -c 'sha256sum \"$0\" 2>/dev/null || readlink \"$0\"' {} \\; | sort",
                    "sh", *WATCHED], check=False).stdout


def give_the_secret(box: Container) -> None:
    """The file both hosts' install.sh take (--steer-secret-file), made as README says."""
    box.write(SECRET_FILE, "c2xlZXB5bGxhbWEtdGVzdC1zZWNyZXQtMzI=\n", mode="600")


def test_bad_arguments_change_nothing(box: Container) -> None:
    # something of the user's already listens on 3941
    box.run(["systemd-run", "--unit=squatter", "python3", "-m", "http.server", "--bind",
             "127.0.0.1", "3941"])
    wait_for(lambda: box.run(["ss", "-Hltn", "sport = :3941"]).stdout.strip(), what="squatter")
    before = snapshot(box)
    cases = [
        (["proxy", "--listen", "127.0.0.1:3941", "--backend", "10.0.0.5:8080", "--mac",
          "ab:cd:ef:01:23:45"], "--listen 127.0.0.1:3941: port 3941 is already in use by python3"),
        (["proxy", "--listen", "0.0.0.0:3939", "--backend", "10.0.0.5:8080", "--mac", "nope"],
         "is not a MAC address"),
        (["proxy", "--listen", "0.0.0.0", "--backend", "10.0.0.5:8080", "--mac", "ab:cd:ef:01:23:45"],
         "--listen '0.0.0.0' is not HOST:PORT"),
        (["proxy", "--listen", "0.0.0.0:3939", "--mac", "ab:cd:ef:01:23:45"], "needs --backend"),
        (["server", "--name", "llama"], "server needs its command"),
        (["server", "--", "/no/such/llama-server", "-m", "x.gguf"], "is not an executable file"),
        (["server", "--idle-timeout", "soon", "--", "/opt/fake/llama-server"], "is not a duration"),
        (["server", "--name", "bad name", "--", "/opt/fake/llama-server"], "letters, digits"),
        (["frobnicate"], "unknown argument"),
        (["proxy", "--listen", "0.0.0.0:3939", "--backend", "10.0.0.5:8080", "--mac",
          "ab:cd:ef:01:23:45", "--mqtt", "10.0.0.9:1883"], "--mqtt needs --web HOST:PORT"),
        (["proxy", "--listen", "0.0.0.0:3939", "--backend", "10.0.0.5:8080", "--mac",
          "ab:cd:ef:01:23:45", "--web", "0.0.0.0:3939"], "give the page a port of its own"),
        (["server", "--mqtt", "10.0.0.9:1883", "--web", "0.0.0.0:3940", "--",
          "/opt/fake/llama-server"], "--mqtt is for the always-on host"),
        (["server", "--web", "3940", "--", "/opt/fake/llama-server"], "--web '3940' is not HOST:PORT"),
        (["server", "/opt/fake/llama-server", "-m", "x.gguf"],
         "the server's command goes after --, as in ./install.sh server [options] -- "
         "/opt/fake/llama-server -m x.gguf"),
    ]
    for args, words in cases:
        result = install(box, *args, check=False)
        assert result.returncode != 0, args
        assert words in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
    not_root = box.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", INSTALL,
                        *PROXY_ARGS], check=False)
    assert not_root.returncode != 0 and "needs root" in not_root.stderr
    assert snapshot(box) == before
    assert box.run(["test", "-e", "/opt/sleepyllama"], check=False).returncode != 0


def test_install_both_roles_run_again_and_uninstall(box: Container) -> None:
    give_the_secret(box)
    first = install(box, *SERVER_ARGS)
    assert "installed sleepyllama into /opt/sleepyllama" in first.stdout
    assert "DEPRECATION" not in first.stdout + first.stderr  # pip's, for a legacy build
    assert "added --metrics to the llama-server command" in first.stdout
    assert 'GPU signal: [idle] gpu = "pstate" (nvidia-smi found)' in first.stdout
    box.write("/etc/mqtt-password-of-the-user", "s3cret\n", mode="600")
    install(box, *PROXY_ARGS)
    # --mqtt: the page tells Home Assistant from the start, before anyone opens it (and so at
    # every boot): its service is enabled and running, not only its socket
    assert box.show("sleepyllama-web.service", "UnitFileState") == "enabled"
    assert box.show("sleepyllama-web.service", "ActiveState") == "active"
    wait_for(lambda: box.show("sleepyllama-server@llama.service", "ActiveState") == "active",
             timeout=60, what="the server")
    assert box.show("sleepyllama-proxy@llama.socket", "ActiveState") == "active"
    # TCP for clients, UDP on the same port for the GPU box's hints
    listen = box.show("sleepyllama-proxy@llama.socket", "Listen")
    assert "127.0.0.1:3939 (Stream)" in listen and "127.0.0.1:3939 (Datagram)" in listen, listen
    # through the proxy's socket and its DynamicUser, capability-less service
    response = box.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:3939/health"]).stdout
    assert json.loads(response) == {"status": "ok"}
    # restarts in a row (a package upgrade, a user fixing a config) never close the port (the
    # service's start limit used to fail its socket), and never leave a client unanswered,
    # whatever it was in: queued, read, held, connecting, spliced (found with 20 restarts under
    # a client every 50 ms: 14 to 55 of about 275 got nothing, a connect under way at the stop)
    box.write("/run/restart-clients.py", RESTART_CLIENTS)
    box.run(["systemd-run", "--unit=restart-clients", "/opt/sleepyllama/bin/python",
             "/run/restart-clients.py"])
    for _ in range(20):
        box.run(["systemctl", "restart", "sleepyllama-proxy@llama.service"])
    wait_for(lambda: box.show("restart-clients.service", "ActiveState") != "active", timeout=120,
             what="the clients of the restarts")
    answers = json.loads(box.run(["cat", "/run/restart-clients.json"]).stdout)
    assert len(answers) > 100 and all(answer == "HTTP/1.1 200" for answer in answers), (
        f"{sum(answer != 'HTTP/1.1 200' for answer in answers)} of {len(answers)} unanswered: "
        f"{sorted(set(answers))}")
    assert box.show("sleepyllama-proxy@llama.socket", "ActiveState") == "active"
    response = box.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:3939/health"]).stdout
    assert json.loads(response) == {"status": "ok"}
    assert "created the system user sleepyllama" in first.stdout
    server_pid = box.show("sleepyllama-server@llama.service", "MainPID")
    assert box.run(["ps", "-o", "user=", "-p", server_pid]).stdout.strip() == "sleepyllama"
    pid = box.show("sleepyllama-proxy@llama.service", "MainPID")
    process = box.run(["cat", f"/proc/{pid}/status"]).stdout
    uid = process.split("Uid:")[1].split()[0]
    assert uid != "0", "the proxy runs as root"
    assert "CapEff:\t0000000000000000" in process, "the proxy holds capabilities"

    # a restart of the proxy (an upgrade, systemctl restart) cuts no stream: the connection
    # goes through systemd's fd store to the next process, and curl reads every token
    box.run(["systemd-run", "--unit=stream-client", "--property=StandardOutput=file:/run/stream",
             "curl", "-sSN", "--max-time", "60", "-H", "Content-Type: application/json", "-d",
             '{"model": "tiny", "stream": true, "messages": [{"role": "user", "content": "hi"}]}',
             "http://127.0.0.1:3939/v1/chat/completions"])
    stream = lambda: box.run(["cat", "/run/stream"], check=False).stdout  # noqa: E731
    # 40 tokens 0.25 s apart: the restart comes with ten seconds of the stream still to go
    wait_for(lambda: "token2 " in stream(), timeout=30, what="the first tokens")
    box.run(["systemctl", "restart", "sleepyllama-proxy@llama.service"])
    wait_for(lambda: box.show("stream-client.service", "ActiveState") != "active", timeout=60,
             what="the stream to end")
    assert box.show("stream-client.service", "Result") == "success", stream()[-500:]
    words = [json.loads(line[6:])["choices"][0]["delta"]["content"]
             for line in stream().splitlines() if line.startswith("data: {")]
    assert "".join(words) == "".join(f"token{i} " for i in range(40)), stream()[-500:]
    assert stream().rstrip().endswith("data: [DONE]")
    journal = box.run(["journalctl", "-u", "sleepyllama-proxy@llama"]).stdout
    assert "handed 0 held client(s) and 1 connection(s) to systemd" in journal, journal[-2000:]
    assert "took back 0 held client(s) and 1 connection(s)" in journal, journal[-2000:]

    config = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    assert '[server.llama]\ncommand = ["/opt/fake/llama-server"' in config
    assert '"--metrics"]' in config
    assert '[idle]\ntimeout = "45m"\ngpu = "pstate"' in config
    assert '[proxy.llama]\nbackend = "127.0.0.1:8080"' in config
    assert '[mqtt]\nbroker = "127.0.0.1:1883"\nusername = "ha"' in config, config
    assert box.run(["stat", "-c", "%a %U", "/etc/sleepyllama/sleepyllama.toml"]).stdout.strip() == (
        "644 root")

    # the proxy kept the model list in its StateDirectory, as its DynamicUser, for while it sleeps
    wait_for(lambda: box.run(["test", "-s", "/var/lib/sleepyllama-proxy/llama.answers.json"],
                             check=False).returncode == 0, timeout=15, what="the proxy's cache")
    # the page (install.sh --web) runs as the proxies' own DynamicUser, so it reads what they
    # keep (0600) in their StateDirectory: their live state and the kept model list
    page = json.loads(box.run(["curl", "-sS", "--max-time", "30",
                               "http://127.0.0.1:3940/api/status"]).stdout)
    assert [shown["name"] for shown in page] == ["llama"], page
    assert page[0]["problem"] == "" and page[0]["models"], page
    web_pid = box.show("sleepyllama-web.service", "MainPID")
    web_uid = box.run(["cat", f"/proc/{web_pid}/status"]).stdout.split("Uid:")[1].split()[0]
    assert web_uid == uid, "the page runs as another user than the proxies"
    metrics = box.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:3940/metrics"]).stdout
    assert 'sleepyllama_wakes_total{proxy="llama"}' in metrics, metrics[:500]
    # both roles on one host: the page shows the GPU box itself too, as its sandbox reads the
    # idle unit's state (an idle check run now, as a person would, not a minute from now)
    box.run(["systemctl", "start", "sleepyllama-idle.service"])
    own = json.loads(box.run(["curl", "-sS", "--max-time", "30",
                              "http://127.0.0.1:3940/api/box"]).stdout)
    assert own["verdict"] and own["readings"] and own["problem"] == "", own
    # the way back (--steer-secret-file on both): a signed "stay awake" from the always-on
    # side reaches the box's socket-activated sleepyllama-steer, which holds a real inhibitor
    stayed = box.run(["sleepyllama", "stay-awake", "1h", "--box", "llama"])
    assert "127.0.0.1: staying awake until" in stayed.stdout, stayed.stdout + stayed.stderr
    assert box.show("sleepyllama-stay-awake.service", "ActiveState") == "active"
    box.run(["sleepyllama", "stay-awake", "--cancel", "--box", "llama"])
    wait_for(lambda: box.show("sleepyllama-stay-awake.service", "ActiveState") != "active",
             what="the inhibitor dropped")
    assert "stay-awake from " in box.journal("-u", "sleepyllama-steer.service")
    # --mqtt: the broker in the config, its password a credential only the page reads
    assert box.run(["stat", "-c", "%a %U", "/etc/sleepyllama/mqtt.password"]).stdout.strip() == (
        "600 root")
    web_environment = box.run(["cat", f"/proc/{web_pid}/environ"]).stdout
    assert "CREDENTIALS_DIRECTORY=" in web_environment
    # the stream over, the taken-back connection is closed and counted so (STATUS every second)
    # ("backend awake", or "answered N s ago" once its readiness is older than 5 s)
    wait_for(lambda: "· 0 connections" in box.show(
        "sleepyllama-proxy@llama.service", "StatusText"), timeout=30, what="the proxy's 0")
    wait_for(lambda: box.show("sleepyllama-server@llama.service", "StatusText") ==
             "ready · 0 requests in flight", timeout=30, what="the server's next look")
    status = box.run(["sleepyllama", "status"]).stdout
    assert "sleepyllama-server@llama.service" in status and "ready · 0 requests in flight" in status, status
    assert "proxy llama: backend 127.0.0.1:8080 ready (HTTP 200)" in status
    assert "answers GET /v1/models while asleep: kept" in status
    report = json.loads(box.run(["sleepyllama", "status", "--json"]).stdout)
    states = {unit["unit"]: unit["active"] for unit in report["units"]}
    assert states["sleepyllama-proxy@llama.socket"] == "active"
    assert states["sleepyllama-idle.timer"] == "active"
    assert report["gpus"] == [{"index": 0, "pstate": 8, "utilization": 0}]

    # a typo in the proxy's table never closes its port, however many clients come (systemd's
    # start limit failed the socket for good); once fixed, it serves again with no command
    config_path = "/etc/sleepyllama/sleepyllama.toml"
    good = box.run(["cat", config_path]).stdout
    box.run(["systemctl", "stop", "sleepyllama-proxy@llama.service"])
    box.write(config_path, good.replace('mac = "ab:cd:ef:01:23:45"', 'mac = "c6:d9:42:9c:af"'))
    for _ in range(8):
        answer = box.run(["curl", "-s", "--max-time", "10", "-w", "\n%{http_code}",
                          "http://127.0.0.1:3939/health"]).stdout
        assert answer.endswith("\n503") and "mac: expected a MAC address" in answer, answer
    assert box.show("sleepyllama-proxy@llama.socket", "ActiveState") == "active"
    assert "config error" in box.show("sleepyllama-proxy@llama.service", "StatusText")
    box.write(config_path, good)
    wait_for(lambda: box.run(["curl", "-s", "--max-time", "10", "-o", "/dev/null", "-w",
                              "%{http_code}", "http://127.0.0.1:3939/health"],
                             check=False).stdout == "200", timeout=15, what="the proxy serving again")

    # sleepyllama restart reads the proxy's table anew by a reload: the same process serves on
    assert "created the system user sleepyllama" in first.stdout
    server_pid = box.show("sleepyllama-server@llama.service", "MainPID")
    assert box.run(["ps", "-o", "user=", "-p", server_pid]).stdout.strip() == "sleepyllama"
    pid = box.show("sleepyllama-proxy@llama.service", "MainPID")
    restarted = box.run(["sleepyllama", "restart"]).stdout
    assert "sleepyllama-proxy@llama.service: config reloaded (held clients and streams kept)" in (
        restarted)
    # and a server whose command did not change keeps running, its model loaded (issue 32: an
    # [idle]-only edit and a restart reloaded the model, "a start counts as use")
    assert "sleepyllama-server@llama.service: runs its command as configured: kept running" in (
        restarted), restarted
    assert box.show("sleepyllama-server@llama.service", "MainPID") == server_pid
    wait_for(lambda: "config reloaded" in box.journal("-u", "sleepyllama-proxy@llama.service"),
             timeout=15, what="the proxy's reload")
    assert box.show("sleepyllama-proxy@llama.service", "MainPID") == pid

    # a broken table fails `systemctl reload` itself (issue 20: it said nothing and exited 0),
    # and the running proxy goes on as it was (that it answers then: tests/proxy/test_program.py)
    box.write(config_path, good.replace('mac = "ab:cd:ef:01:23:45"', 'mac = "c6:d9:42:9c:af"'))
    reload = box.run(["systemctl", "reload", "sleepyllama-proxy@llama.service"], check=False)
    assert reload.returncode != 0, reload
    assert "mac: expected a MAC address" in box.journal("-u", "sleepyllama-proxy@llama.service")
    # and its STATUS says why (issue 33: the check ran first, the proxy was never told, and its
    # STATUS kept "backend awake")
    wait_for(lambda: box.show("sleepyllama-proxy@llama.service", "StatusText").startswith(
        "config not reloaded: "), timeout=15, what="the reason in STATUS")
    assert box.show("sleepyllama-proxy@llama.service", "MainPID") == pid
    assert box.show("sleepyllama-proxy@llama.service", "ActiveState") == "active"
    box.write(config_path, good)

    # a user's own table and comment survive, and a second run changes nothing at all
    box.run(["sh", "-c", "printf '\\n# mine\\n[proxy.other]\\nbackend = \"10.0.0.9:80\"\\n"
                         "mac = \"ab:cd:ef:01:23:46\"\\n' >> /etc/sleepyllama/sleepyllama.toml"])
    before = snapshot(box)
    for args in (SERVER_ARGS, PROXY_ARGS):
        again = install(box, *args, check=False)
        assert "nothing changed: already installed as asked" in again.stdout, again.stdout
        # the user's own [proxy.other] has no units: check says so, and so does the exit status
        assert again.returncode == 1 and (
            "error: sleepyllama-proxy@other.socket is disabled" in again.stdout), again.stdout
    assert snapshot(box) == before
    assert "# mine\n[proxy.other]" in box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout

    # an upgrade is one line, from the installed config (issue 32: every argument again, the
    # whole server command line included). New code (an older checkout's hash stands in for
    # it) restarts the page and the proxy, which run it, and not the model server, which says so
    box.write("/opt/sleepyllama/.source-hash", "an older checkout\n")
    config_before = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    server_pid = box.show("sleepyllama-server@llama.service", "MainPID")
    proxy_pid = box.show("sleepyllama-proxy@llama.service", "MainPID")
    box.run(["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "http://127.0.0.1:3940/"])
    web_pid = box.show("sleepyllama-web.service", "MainPID")
    upgraded = install(box, "upgrade", check=False)
    assert "upgrading server llama" in upgraded.stdout and "upgrading proxy llama" in (
        upgraded.stdout), upgraded.stdout
    assert "[proxy.other]: not installed by install.sh" in upgraded.stderr, upgraded.stderr
    assert "installed sleepyllama into /opt/sleepyllama" in upgraded.stdout
    assert upgraded.stdout.count("sleepyllama-server@llama.service runs the old sleepyllama "
                                 "code until it next starts") == 1, upgraded.stdout
    assert "sleepyllama-web.service" in upgraded.stdout.split("restarted ", 1)[1], upgraded.stdout
    wait_for(lambda: box.show("sleepyllama-web.service", "MainPID") not in ("0", web_pid),
             timeout=30, what="the page on the new code")
    wait_for(lambda: box.show("sleepyllama-proxy@llama.service", "MainPID") not in (
        "0", proxy_pid), timeout=30, what="the proxy on the new code")
    assert box.show("sleepyllama-server@llama.service", "MainPID") == server_pid
    assert box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout == config_before

    # a setting alone, without the server's command (issue 32: it was refused), changes that
    # setting and nothing else: the model server keeps running
    server_pid = box.show("sleepyllama-server@llama.service", "MainPID")
    install(box, "server", "--name", "llama", "--idle-timeout", "50m", check=False)
    changed = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    assert '[idle]\ntimeout = "50m"' in changed and changed.replace("50m", "45m") == config_before
    assert box.show("sleepyllama-server@llama.service", "MainPID") == server_pid

    # the user's own files beside ours: a drop-in of theirs, a key file of theirs
    mine = "/etc/systemd/system/sleepyllama-server@llama.service.d"
    box.write(f"{mine}/mine.conf", "[Service]\nEnvironment=CUDA_VISIBLE_DEVICES=0\n")
    box.write("/etc/sleepyllama/my-own.key", "their key\n", mode="600")
    removed = install(box, "--uninstall")
    assert "kept /etc/sleepyllama/sleepyllama.toml" in removed.stdout
    assert f"kept {mine}: mine.conf (not written by install.sh)" in removed.stdout, removed.stdout
    leftovers = box.run(["sh", "-c", "ls -d /etc/systemd/system/sleepyllama-* "
                         "/usr/lib/systemd/system-sleep/sleepyllama /opt/sleepyllama "
                         "/usr/local/bin/sleepyllama 2>/dev/null; find /etc/systemd/system "
                         "-lname '*sleepyllama*'"], check=False).stdout
    # theirs alone: the user's, and this test's own stand-in drop-in (give_a_wakeable_card)
    assert sorted(leftovers.split()) == ["/etc/systemd/system/sleepyllama-idle.service.d", mine]
    assert box.run(["ls", mine]).stdout.split() == ["mine.conf"]
    # what a user sees: no unit file, and nothing of ours running, enabled or failed. (Units
    # nothing refers to leave systemd's list in its own time, its GC: not something to wait on.)
    # (list-unit-files exits 1 when nothing matches: that is the answer wanted)
    assert box.run(["systemctl", "list-unit-files", "--no-legend", "sleepyllama-*"],
                   check=False).stdout.strip() == ""
    listed = box.run(["systemctl", "list-units", "--all", "--no-legend", "--plain",
                      "sleepyllama-*"]).stdout
    still = [row for row in listed.splitlines() if row.split()[2:3] != ["inactive"]]
    assert still == [], listed
    purged = install(box, "--uninstall", "--purge")
    assert box.run(["ls", "/etc/sleepyllama"]).stdout.split() == ["my-own.key"], purged.stdout
    assert "kept /etc/sleepyllama: my-own.key (not written by install.sh)" in purged.stdout
    for state in ("/var/lib/sleepyllama-proxy", "/var/lib/private/sleepyllama-proxy"):
        assert box.run(["test", "-e", state], check=False).returncode != 0, state
    # the servers' system user goes with --purge, and the uninstall before it said it stays
    assert "kept the system user sleepyllama" in removed.stdout, removed.stdout
    assert "kept /etc/sleepyllama/steer.secret (--purge removes it)" in removed.stdout
    assert box.run(["getent", "passwd", "sleepyllama"], check=False).returncode != 0, (
        purged.stdout)


def test_a_newcomers_mistakes_each_say_what_to_do(box: Container) -> None:
    # a server whose model file does not exist fails at each start: restarted a few times, then
    # stopped by systemd's start limit (RestartSec shortened here), and named by check
    box.write("/etc/systemd/system/sleepyllama-server@bad.service.d/test.conf",
              "[Service]\nRestartSec=1\n")
    give_the_secret(box)
    install(box, *SERVER_ARGS)
    installed = install(box, "server", "--name", "bad", "--", "/opt/fake/llama-server", "-m",
                        "/models/nope.gguf", "--host", "127.0.0.1", "--port", "8081",
                        "--api-key", "sekrit", check=False)
    assert installed.returncode == 1  # its own last line says it is not ready
    assert "warning: --api-key puts the key in /etc/sleepyllama/sleepyllama.toml" in installed.stdout
    assert "error: [server.bad] command: -m /models/nope.gguf: no such file" in installed.stdout
    assert "Not ready as configured: fix the errors above, then: sudo sleepyllama restart" in (
        installed.stdout)
    def gave_up() -> bool:
        unit = "sleepyllama-server@bad.service"
        # StartLimitBurst=5: systemd says "start request repeated too quickly" and stops
        return box.show(unit, "NRestarts") == "5" and box.show(unit, "ActiveState") == "failed"

    wait_for(gave_up, timeout=90, what="systemd to stop restarting the bad server")
    check = box.run(["sleepyllama", "check"], check=False)
    assert check.returncode == 1
    failed = [line for line in check.stdout.splitlines()
              if line.startswith("error: sleepyllama-server@bad.service failed (exit-code) after 5 "
                                 "restarts: exited unasked (status 1): ")]
    assert failed and "failed to open GGUF file '/models/nope.gguf'" in failed[0], check.stdout
    assert failed[0].endswith("fix what it says, then: sudo sleepyllama restart")
    status = box.run(["sleepyllama", "status"], check=False).stdout
    assert "failed (exit-code) after 5 restarts" in status and RESTART_HINT in status

    # restart validates as check does: the model file still missing, nothing is restarted
    refused = box.run(["sleepyllama", "restart"], check=False)
    assert refused.returncode == 1 and ("[server.bad] command: -m /models/nope.gguf: no such "
                                        "file") in refused.stderr, refused.stderr
    box.run(["sh", "-c", "mkdir -p /models && touch /models/nope.gguf"])  # the fix
    restarted = box.run(["sleepyllama", "restart"])
    assert "sleepyllama-server@bad.service: failed state cleared" in restarted.stdout
    # restarted alone: the other server, which runs its command, keeps its model loaded
    wait_for(lambda: box.show("sleepyllama-server@bad.service", "ActiveState") == "active",
             timeout=60, what="the fixed server")
    assert box.show("sleepyllama-servers.target", "ActiveState") == "active"

    # a model kept in a closed home, and a port another service holds (Ollama's own unit, say):
    # the servers' user and the holder's unit are named, each with its fix
    box.run(["sh", "-c", "mkdir -p /home/alice/models && touch /home/alice/models/m.gguf && "
                         "echo sekrit > /home/alice/llama.key && chmod 700 /home/alice"])
    box.run(["systemd-run", "--unit=other-server", "--property=Type=exec", "python3", "-m",
             "http.server", "--bind", "127.0.0.1", "8082"])
    wait_for(lambda: box.run(["ss", "-Hltn", "sport = :8082"]).stdout.strip(), timeout=30,
             what="the other server's port")
    home = install(box, "server", "--name", "home", "--", "/opt/fake/llama-server", "-m",
                   "/home/alice/models/m.gguf", "--host", "127.0.0.1", "--port", "8082",
                   "--api-key-file", "/home/alice/llama.key", check=False)
    assert home.returncode == 1, home.stdout
    # root reads the key; the idle unit, whose ProtectHome=yes hides /home, would not
    assert ("error: [server.home] --api-key-file /home/alice/llama.key: the idle check cannot read "
            "it (its unit hides /home (ProtectHome=yes))") in home.stdout, home.stdout
    # the container's /usr is this machine's: setfacl is there or not alike
    acl = "" if shutil.which("setfacl") else "sudo apt-get install acl, then "
    assert ("error: [server.home] command: /home/alice/models/m.gguf: the server runs as user "
            f"sleepyllama, who may not read it: /home/alice is closed to it: {acl}sudo setfacl -m "
            "u:sleepyllama:x /home/alice") in home.stdout, home.stdout
    assert "error: [server.home] port 8082 is held by python3 (pid " in home.stdout, home.stdout
    assert ", other-server.service): the server cannot start there; sudo systemctl disable --now " \
           "other-server.service, or give the server another --port" in home.stdout, home.stdout
    install(box, "--uninstall", "--name", "home")
    box.run(["systemctl", "stop", "other-server.service"])

    # the commands README gives work as written from a login shell, and for a non-root user
    dry_run = box.run(["bash", "-lc", "sleepyllama-idle --dry-run"])
    assert "stay awake" in dry_run.stderr or "would sleep" in dry_run.stderr, dry_run.stderr
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    as_user = box.run([*nobody, "/usr/local/bin/sleepyllama", "status"], check=False)
    assert as_user.returncode == 0, as_user.stderr
    assert "last idle check" in as_user.stdout and "Traceback" not in as_user.stderr
    user_dry_run = box.run([*nobody, "/usr/local/bin/sleepyllama-idle", "--dry-run"], check=False)
    assert user_dry_run.returncode == 0 and "Traceback" not in user_dry_run.stderr
    assert "not root: the verdict is not kept" in user_dry_run.stderr

    # a bare MAC is accepted and written the usual way
    install(box, "proxy", "--name", "llama", "--listen", "127.0.0.1:3939", "--backend",
            "127.0.0.1:8080", "--mac", "ABCDEF012345")
    assert 'mac = "ab:cd:ef:01:23:45"' in box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout

    # the backend's API key: a root-only copy, handed to the DynamicUser proxy as a credential
    box.write("/root/llama.key", "sekrit-key\n")
    install(box, "proxy", "--name", "llama", "--listen", "127.0.0.1:3939", "--backend",
            "127.0.0.1:8080", "--mac", "ABCDEF012345", "--kind", "llama-server",
            "--api-key-file", "/root/llama.key")
    assert box.run(["stat", "-c", "%a %U", "/etc/sleepyllama/llama.key"]).stdout.strip() == (
        "600 root")
    assert "LoadCredential=api-key:/etc/sleepyllama/llama.key" in box.run(
        ["cat", "/etc/systemd/system/sleepyllama-proxy@llama.service.d/api-key.conf"]).stdout
    config = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    assert 'kind = "llama-server"\napi_key_file = "/etc/sleepyllama/llama.key"' in config
    # the proxy's user cannot read the file itself: serving proves it read its credential
    response = box.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:3939/health"]).stdout
    assert json.loads(response) == {"status": "ok"}
    assert "config error" not in box.show("sleepyllama-proxy@llama.service", "StatusText")
    assert "sekrit" not in box.run(["journalctl", "-u", "sleepyllama-proxy@llama"]).stdout

    # Ollama listens where its unit's OLLAMA_HOST says (127.0.0.1 without it): install.sh sets it,
    # and check reads it as the unit has it
    box.write("/opt/fake/fake_llama_server.py", FAKE_SERVER.read_text())
    box.write("/opt/fake/fake_servers.py", (FAKE_SERVER.parent / "fake_servers.py").read_text())
    box.write("/opt/fake/ollama", "#!/bin/sh\n# `ollama serve`: its API where OLLAMA_HOST says\n"
              "host=${OLLAMA_HOST:-127.0.0.1:11434}\nexec /opt/sleepyllama/bin/python "
              "/opt/fake/fake_servers.py --kind ollama --host \"${host%:*}\" --port \"${host##*:}\"\n",
              mode="755")
    ollama = install(box, "server", "--name", "ollama", "--", "/opt/fake/ollama", "serve",
                     check=False)
    assert "wrote /etc/systemd/system/sleepyllama-server@ollama.service.d/ollama-host.conf" in (
        ollama.stdout), ollama.stdout
    assert "OLLAMA_HOST=0.0.0.0:11434" in box.show("sleepyllama-server@ollama.service", "Environment")
    assert "[server.ollama] listens on" not in ollama.stdout, ollama.stdout
    install(box, "--uninstall", "--name", "ollama")

    # one name goes, the rest stays; an instance enabled but not running is disabled too
    box.run(["systemctl", "stop", "sleepyllama-server@bad.service"])
    removed = install(box, "--uninstall", "--name", "bad")
    assert box.run(["systemctl", "is-enabled", "sleepyllama-server@bad.service"],
                   check=False).stdout.strip() != "enabled"
    assert "stopped and disabled sleepyllama-server@bad.service" in removed.stdout
    assert "removed [server.bad] from /etc/sleepyllama/sleepyllama.toml" in removed.stdout
    config = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    assert "[server.bad]" not in config and "[server.llama]" in config and "[proxy.llama]" in config
    assert box.show("sleepyllama-server@llama.service", "ActiveState") == "active"
    everything = install(box, "--uninstall")
    assert "kept /var/lib/sleepyllama, the idle clock and counters (--purge removes it)" in (
        everything.stdout)
