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
from container import INSTALL_TREES, REPO, Container, build_wheelhouse, missing_requirement

from conftest import FAKE_SERVER, wait_for

INSTALL = str(REPO / "install.sh")
# what install.sh writes, to compare between runs
WATCHED = ["/etc/systemd/system", "/etc/sleepyllama", "/usr/lib/systemd/system-sleep",
           "/usr/local/bin/sleepyllama", "/opt/sleepyllama/.source-hash"]
SERVER_ARGS = ["server", "--name", "llama", "--idle-timeout", "45m", "--", "/opt/fake/llama-server",
               "--host", "127.0.0.1", "--port", "8080", "--load-seconds", "1"]
PROXY_ARGS = ["proxy", "--name", "llama", "--listen", "127.0.0.1:3939",
              "--backend", "127.0.0.1:8080", "--mac", "ab:cd:ef:01:23:45"]


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
    smi = container.local_bin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, P8, 0'\n")
    smi.chmod(0o755)
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


def test_bad_arguments_change_nothing(box: Container) -> None:
    before = snapshot(box)
    cases = [
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
    first = install(box, *SERVER_ARGS)
    assert "installed sleepyllama into /opt/sleepyllama" in first.stdout
    assert "added --metrics to the llama-server command" in first.stdout
    assert 'GPU signal: [idle] gpu = "pstate" (nvidia-smi found)' in first.stdout
    install(box, *PROXY_ARGS)
    wait_for(lambda: box.show("sleepyllama-server@llama.service", "ActiveState") == "active",
             timeout=60, what="the server")
    assert box.show("sleepyllama-proxy@llama.socket", "ActiveState") == "active"
    # through the proxy's socket and its DynamicUser, capability-less service
    response = box.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:3939/health"]).stdout
    assert json.loads(response) == {"status": "ok"}
    pid = box.show("sleepyllama-proxy@llama.service", "MainPID")
    process = box.run(["cat", f"/proc/{pid}/status"]).stdout
    uid = process.split("Uid:")[1].split()[0]
    assert uid != "0", "the proxy runs as root"
    assert "CapEff:\t0000000000000000" in process, "the proxy holds capabilities"

    config = box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    assert '[server.llama]\ncommand = ["/opt/fake/llama-server"' in config
    assert '"--metrics"]' in config
    assert '[idle]\ntimeout = "45m"\ngpu = "pstate"' in config
    assert '[proxy.llama]\nbackend = "127.0.0.1:8080"' in config
    assert box.run(["stat", "-c", "%a %U", "/etc/sleepyllama/sleepyllama.toml"]).stdout.strip() == (
        "644 root")

    status = box.run(["sleepyllama", "status"]).stdout
    assert "sleepyllama-server@llama.service" in status and "ready · 0 requests in flight" in status
    assert "proxy llama: backend 127.0.0.1:8080 ready (HTTP 200)" in status
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
                              "%{http_code}", "http://127.0.0.1:3939/health"]).stdout == "200",
             timeout=15, what="the proxy serving again")

    # a user's own table and comment survive, and a second run changes nothing at all
    box.run(["sh", "-c", "printf '\\n# mine\\n[proxy.other]\\nbackend = \"10.0.0.9:80\"\\n"
                         "mac = \"ab:cd:ef:01:23:46\"\\n' >> /etc/sleepyllama/sleepyllama.toml"])
    before = snapshot(box)
    for args in (SERVER_ARGS, PROXY_ARGS):
        again = install(box, *args)
        assert "nothing changed: already installed as asked" in again.stdout, again.stdout
    assert snapshot(box) == before
    assert "# mine\n[proxy.other]" in box.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout

    removed = install(box, "--uninstall")
    assert "kept /etc/sleepyllama/sleepyllama.toml" in removed.stdout
    leftovers = box.run(["sh", "-c", "ls -d /etc/systemd/system/sleepyllama-* "
                         "/usr/lib/systemd/system-sleep/sleepyllama /opt/sleepyllama "
                         "/usr/local/bin/sleepyllama 2>/dev/null; find /etc/systemd/system "
                         "-lname '*sleepyllama*'"], check=False).stdout
    assert leftovers == ""
    assert box.run(["systemctl", "list-units", "--all", "--no-legend", "sleepyllama-*"]).stdout.strip() == ""
    install(box, "--uninstall", "--purge")
    assert box.run(["test", "-e", "/etc/sleepyllama"], check=False).returncode != 0
