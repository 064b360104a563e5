"""The inference host's whole cycle under real systemd 252 and logind, in a container.

Units installed as shipped; a fake llama-server (2 s loading phase) as the model server; a fake
nvidia-smi reporting P8; the idle timer sped up to 2 s and the idle timeout to 6 s. Then, for
real: timer -> idle check -> servers stopped -> logind Suspend -> sleep.target ->
systemd-sleep runs the hooks -> the hook's post -> servers READY again. And with a sleep
inhibitor held, nothing of that happens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from container import (
    INSTALL_TREES,
    REPO,
    Container,
    build_install_tree,
    give_a_wakeable_card,
    missing_requirement,
)

from conftest import FAKE_SERVER, STAND_INS, build_fake_libcuda, wait_for

UNITS = REPO / "units"
SYSUSERS = REPO / "sysusers.d" / "sleepyllama.conf"
SERVER = "sleepyllama-server@llama.service"


def under_a_home(path: str) -> bool:
    return path.startswith(("/root", "/home"))


@pytest.fixture(scope="module")
def install_tree() -> Iterator[Path]:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    tree = build_install_tree(INSTALL_TREES / f"cycle-{os.getpid()}")
    yield tree
    shutil.rmtree(tree, ignore_errors=True)


@pytest.fixture
def host(tmp_path: Path, install_tree: Path) -> Iterator[Container]:
    # PAM's configuration, so that `su` opens real logind sessions (the volatile root has no /etc)
    pam = tuple(f"--bind-ro={path}" for path in ("/etc/pam.d", "/etc/security", "/etc/login.defs")
                if os.path.exists(path))
    container = Container(tmp_path, f"sl-cycle-{tmp_path.name[-12:]}".replace("_", "-"),
                          install_tree, binds=pam)
    try:
        install(container, tmp_path)
        yield container
    finally:
        container.stop()


def install(container: Container, tmp_path: Path) -> None:
    """What install.sh does on the inference host, with test doubles for GPU and model."""
    for unit in UNITS.iterdir():
        container.write(f"/etc/systemd/system/{unit.name}", unit.read_text())
    # the servers' system user, as install.sh makes it
    container.write("/etc/sysusers.d/sleepyllama.conf", SYSUSERS.read_text())
    container.run(["systemd-sysusers"])
    hook = container.sleep_hooks / "sleepyllama"
    shutil.copy(REPO / "bin" / "sleepyllama-sleep", hook)
    hook.chmod(0o755)
    smi = container.local_bin / "nvidia-smi"
    # the GPUs (P8) and, asked for its compute apps, no program on them
    smi.write_text("#!/bin/sh\ncase \"$1\" in --query-compute-apps=*) ;; *) echo '0, P8, 0';; esac\n")
    smi.chmod(0o755)
    give_a_wakeable_card(container)
    shutil.copy(STAND_INS / "modprobe", container.local_bin / "modprobe")
    container.run(["mkdir", "-p", "/run/fake-cuda"])
    # an NVIDIA driver whose CUDA works (the stand-in libcuda.so.1), until a test breaks it
    build_fake_libcuda(tmp_path / "cuda")
    container.run(["cp", str(tmp_path / "cuda" / "libcuda.so.1"), "/run/fake-cuda/"])
    container.write("/run/fake-cuda/result", "0\n")
    container.write("/etc/systemd/system/sleepyllama-gpu-check.service.d/fake-cuda.conf",
                    "[Service]\nEnvironment=LD_LIBRARY_PATH=/run/fake-cuda\n"
                    "ReadWritePaths=/run/fake-cuda\n")
    container.write("/opt/fake/llama-server", FAKE_SERVER.read_text(), mode="755")
    container.write("/etc/sleepyllama/sleepyllama.toml", """
[server.llama]
command = ["/opt/sleepyllama/bin/python", "/opt/fake/llama-server", "--host", "127.0.0.1",
           "--port", "8080", "--load-seconds", "2", "--metrics"]
activity = "llama-server"

[idle]
timeout = "6s"
gpu = "pstate"
""")
    # one empty On*Sec= resets every trigger of the timer, so one reset, then both triggers
    container.write("/etc/systemd/system/sleepyllama-idle.timer.d/test.conf",
                    "[Timer]\nOnActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=2s\nAccuracySec=100ms\n")
    if under_a_home(sys.base_prefix):
        # install.sh makes /opt/sleepyllama from the system's python3; this test's interpreter
        # (the venv's base) lives under a home directory, which ProtectHome=yes hides
        print(f"note: the interpreter in {sys.base_prefix} is under a home directory: "
              "ProtectHome=read-only for the idle, sleep and GPU check services in this test")
        for unit in ("sleepyllama-idle.service", "sleepyllama-sleep.service",
                     "sleepyllama-gpu-check.service"):
            container.write(f"/etc/systemd/system/{unit}.d/test-home.conf",
                            "[Service]\nProtectHome=read-only\n")
        # and the servers' user must pass through that home (the container's own /root, a
        # tmpfs: the host's stays as it is), as README says for a model kept in a home
        home = "/" + Path(sys.base_prefix).parts[1]
        container.run(["chmod", "o+x", home])
    container.run(["systemctl", "daemon-reload"])
    container.run(["systemctl", "enable", SERVER, "sleepyllama-sleep.service"])


def wait_in(host: Container, condition: Callable[[], object], what: str, timeout: float) -> None:
    try:
        wait_for(condition, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- journal ---\n{host.journal()[-6000:]}") from None


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_idle_box_suspends_and_comes_back_serving(host: Container) -> None:
    # `systemctl start` returns only when the server is READY: the model is loaded
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
    health = host.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "http://127.0.0.1:8080/health"]).stdout
    assert health == "200", "systemctl start returned before the model was loaded"
    assert host.show(SERVER, "StatusText") == "ready · 0 requests in flight"
    # the model server and what it started run as the servers' system user, not root
    pid = host.show(SERVER, "MainPID")
    users = host.run(["ps", "-o", "user=", "--ppid", pid, "-p", pid]).stdout.split()
    assert users and set(users) == {"sleepyllama"}, users

    assert "CUDA initializes, 1 GPU" in host.journal("-u", "sleepyllama-gpu-check")
    # the resume will break CUDA, as users report (cuInit 999 until nvidia_uvm is reloaded)
    host.write("/run/fake-cuda/result", "999\n")
    host.run(["systemctl", "start", "sleepyllama-idle.timer"])
    wait_in(host, lambda: "Entering sleep state 'suspend'" in host.journal(), "the suspend", 90)
    wait_in(host, lambda: count(r"llama is ready", host.journal("-u", SERVER)) == 2,
            "the server READY again after the resume", 60)

    journal = host.journal()
    steps = [
        r"sleepyllama-idle\[\d+\]: going to sleep: idle for",
        # Wake-on-LAN was off on the card: turned on before anything stopped
        r"sleepyllama-idle\[\d+\]: Wake-on-LAN was off on wol0 \(Wake-on: d\): turned on",
        r"sleepyllama-idle\[\d+\]: servers stopped",
        r"sleepyllama-idle\[\d+\]: suspend requested from logind",
        r"Reached target sleep.target",
        r"Entering sleep state 'suspend'",
        r"System returned from sleep state",
        r"systemd-sleep\[\d+\]: post: idle clock reset",  # the hook, run by systemd-sleep
        # CUDA broken by the resume, healed before the server starts
        r"cuInit failed \(CUDA_ERROR_UNKNOWN 999, unknown error\): reloading nvidia_uvm",
        r"CUDA initializes again after reloading nvidia_uvm",
        r"sleepyllama-server\[\d+\]: llama is ready",
    ]
    positions = []
    for step in steps:
        found = [m.start() for m in re.finditer(step, journal)]
        assert found, f"never happened: {step}\n{journal[-4000:]}"
        positions.append(found[-1] if "ready" in step else found[0])
    assert positions == sorted(positions), "the cycle happened out of order:\n" + "\n".join(
        line for line in journal.splitlines()
        if any(re.search(step, line) for step in steps))
    assert host.power_state.read_text().strip() == "mem"  # systemd-sleep's write, harmless here
    assert host.run(["cat", "/run/fake-ethtool/calls"]).stdout.split() == ["-s", "wol0", "wol", "g"]
    assert host.run(["cat", "/run/fake-cuda/modprobe"]).stdout.splitlines() == ["-r nvidia_uvm",
                                                                               "nvidia_uvm"]
    assert host.show(SERVER, "ActiveState") == "active"
    # the ledger the code wrote on the way, and the history drawn from it
    # root's services write one ledger, the servers' user its own; history reads both
    entries = sorted((json.loads(line) for line in host.run(
        ["cat", "/var/lib/sleepyllama/ledger.jsonl",
         "/var/lib/sleepyllama/servers/ledger.jsonl"]).stdout.splitlines()),
        key=lambda entry: entry["at"])
    events = [entry["event"] for entry in entries]
    assert events.index("sleep") < events.index("suspend") < events.index("resume") < (
        events.index("gpu-healed")), events
    assert entries[events.index("sleep")]["reason"].startswith("idle for")
    ready = [entry for entry in entries if entry["event"] == "server-ready"]
    assert len(ready) >= 2 and all(entry["load_seconds"] >= 2 for entry in ready)  # loads in 2 s
    shown = host.run(["/opt/sleepyllama/bin/sleepyllama", "history", "--days", "1"]).stdout
    # the resume in its words: CUDA broke across it and was healed before the server started
    assert "1 wake(s)" in shown and (
        "resumed; CUDA healed by reloading nvidia_uvm; llama ready after") in shown, shown
    print("\nsleepyllama history --days 1, in the container:\n" + shown)
    print("\ntimeline (CLOCK_MONOTONIC in the container):")
    for line in journal.splitlines():
        if any(re.search(step, line) for step in steps) or "sleepyllama-idle" in line:
            print("  " + line)


def test_a_sleep_inhibitor_keeps_the_box_up(host: Container) -> None:
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
    host.run(["systemd-run", "--unit=hold-sleep", "systemd-inhibit", "--what=sleep",
              "--who=make", "--why=building the kernel", "sleep", "600"])
    wait_for(lambda: "make" in host.run(["systemd-inhibit", "--list"]).stdout,
             what="the inhibitor")
    host.run(["systemctl", "start", "sleepyllama-idle.timer"])
    said = "stay awake: busy: sleep inhibited by make (building the kernel)"
    # six checks, twice the idle timeout: counted in the journal, not slept through
    wait_in(host, lambda: host.journal().count(said) >= 6, timeout=90,
            what="six idle checks, each kept up by the inhibitor")
    journal = host.journal()
    assert "Entering sleep state" not in journal
    assert "going to sleep" not in journal
    assert host.show(SERVER, "ActiveState") == "active"


def test_stay_awake_holds_a_real_inhibitor_that_the_idle_check_names(host: Container) -> None:
    sleepyllama = "/opt/sleepyllama/bin/sleepyllama"
    said = host.run([sleepyllama, "stay-awake", "2h"]).stdout
    assert said.startswith("staying awake until ")
    listed = host.run(["systemd-inhibit", "--list", "--no-pager"]).stdout
    assert "sleepyllama" in listed and "stay-awake until" in listed and "block" in listed
    verdict = host.run(["/opt/sleepyllama/bin/sleepyllama-idle", "--dry-run"]).stderr
    assert "busy: sleep inhibited by sleepyllama (stay-awake until " in verdict, verdict
    assert "stay-awake until " in host.run([sleepyllama, "status"], check=False).stdout
    host.run([sleepyllama, "stay-awake", "30m"])  # a new duration replaces the old one
    assert host.run(["systemd-inhibit", "--list", "--no-pager"]).stdout.count("stay-awake") == 1
    host.run([sleepyllama, "stay-awake", "--cancel"])
    wait_for(lambda: "stay-awake" not in host.run(["systemd-inhibit", "--list", "--no-pager"]).stdout,
             what="the inhibitor to go")
    assert "sleep inhibited" not in host.run(["/opt/sleepyllama/bin/sleepyllama-idle",
                                              "--dry-run"]).stderr


def test_an_awake_window_keeps_the_box_up_and_its_timer_wakes_it(host: Container) -> None:
    config = host.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    host.write("/etc/sleepyllama/sleepyllama.toml",
               config + '\n[schedule]\nawake = ["00:00..24:00"]\n')
    python = "/opt/sleepyllama/bin/python"
    assert host.run([python, "-m", "sleepyllama.host.schedule", "install"]).stdout.strip() == "written"
    timer = "sleepyllama-wake.timer"
    assert host.show(timer, "WakeSystem") == "yes"
    assert "OnCalendar=*-*-* 00:00:00 ;" in host.show(timer, "TimersCalendar")  # every day
    assert host.show(timer, "Triggers") == "sleepyllama-servers.target"
    if host.show(timer, "ActiveState") != "active":
        # an RTC wake alarm (CLOCK_REALTIME_ALARM) needs hardware and a kernel that have one;
        # a VM or a container may not: then systemd fails the timer, and check names it
        said = host.journal("-u", timer)
        assert "Failed to enter waiting state: Operation not supported" in said, said[-1500:]
        print(f"\nnote: this machine has no RTC wake alarm; {timer} is configured but cannot arm")
        check = host.run(["/opt/sleepyllama/bin/sleepyllama", "check"], check=False).stdout
        assert f"error: {timer} failed" in check, check
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
    host.run(["systemctl", "start", "sleepyllama-idle.timer"])
    said = "stay awake: busy: inside the awake window 00:00..24:00 (until 24:00)"
    # past the idle timeout, five checks on: only the window keeps the box up
    wait_in(host, lambda: host.journal().count(said) >= 5, timeout=90,
            what="five idle checks, each kept up by the window")
    assert "Entering sleep state" not in host.journal()
    # the window gone from the config, the timer goes too
    host.write("/etc/sleepyllama/sleepyllama.toml", config)
    assert host.run([python, "-m", "sleepyllama.host.schedule", "install"]).stdout.strip() == "removed"
    assert host.show(timer, "LoadState") == "not-found"


def test_the_real_llama_server_serves_under_the_hardened_unit(host: Container) -> None:
    """The unit's user, syscall filter and read-only system with the real binary (CPU): what
    the fake server cannot show is whether llama-server itself runs under them."""
    binary, model = os.environ.get("LLAMA_SERVER", ""), os.environ.get("LLAMA_MODEL", "")
    if not (binary and model and os.path.exists(binary)):
        pytest.skip("set LLAMA_SERVER and LLAMA_MODEL (./run-tests builds and names them)")
    if not all(Path(path).resolve().is_relative_to(REPO) for path in (binary, model)):
        pytest.skip("LLAMA_SERVER and LLAMA_MODEL outside the checkout: the container sees only it")
    # where install.sh's users keep them, not under the checkout: it may be in /tmp, which the
    # unit's PrivateTmp= hides (as CI's clone is)
    host.run(["mkdir", "-p", "/opt/llama"])
    host.run(["cp", str(Path(binary).resolve()), str(Path(model).resolve()), "/opt/llama/"])
    host.write("/etc/sleepyllama/sleepyllama.toml", f"""
[server.llama]
command = ["/opt/llama/{Path(binary).resolve().name}", "-m", "/opt/llama/{Path(model).resolve().name}",
           "--host", "127.0.0.1", "--port", "8080", "--metrics", "-c", "256", "-np", "1"]

[idle]
gpu = "pstate"
""")
    check = host.run(["/opt/sleepyllama/bin/sleepyllama", "check"], check=False).stdout
    assert "may not read" not in check and "may not run" not in check, check
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=120)
    assert host.show(SERVER, "ActiveState") == "active", host.journal("-u", SERVER)[-4000:]
    pid = host.show(SERVER, "MainPID")
    users = host.run(["ps", "-o", "user=", "--ppid", pid, "-p", pid]).stdout.split()
    assert set(users) == {"sleepyllama"}, users
    completion = json.loads(host.run(
        ["curl", "-sS", "--max-time", "60", "-H", "Content-Type: application/json", "-d",
         '{"prompt": "Hello", "n_predict": 4}', "http://127.0.0.1:8080/completion"]).stdout)
    assert completion["tokens_predicted"] == 4, completion
    verdict = host.run(["/opt/sleepyllama/bin/sleepyllama-idle", "--dry-run"], check=False)
    assert "llama: " in verdict.stderr and "unreadable" not in verdict.stderr, verdict.stderr
    journal = host.journal("-u", SERVER)
    assert "Operation not permitted" not in journal and "Bad system call" not in journal, journal


def test_a_box_whose_card_cannot_wake_it_stays_up_and_says_why(host: Container) -> None:
    host.write("/run/fake-ethtool/supports", "d\n")  # a driver without Wake-on-LAN
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
    host.run(["systemctl", "start", "sleepyllama-idle.timer"])
    said = "staying awake: no magic packet could wake the box again: wol0 cannot wake the box"
    wait_in(host, lambda: said in host.journal("-u", "sleepyllama-idle"), "the refusal", 60)
    assert "Entering sleep state" not in host.journal()
    assert host.show(SERVER, "ActiveState") == "active"  # never stopped: it kept serving
    check = host.run(["/opt/sleepyllama/bin/sleepyllama", "check"], check=False).stdout
    assert "wol0 cannot wake the box on a magic packet" in check, check


def test_a_gpu_that_stays_broken_is_reported_and_reboots_once(host: Container) -> None:
    config = host.run(["cat", "/etc/sleepyllama/sleepyllama.toml"]).stdout
    host.write("/etc/sleepyllama/sleepyllama.toml", config + '\n[resume]\ngpu_failure = "reboot"\n')
    host.write("/run/fake-cuda/result", "999\n")
    host.write("/run/fake-cuda/stays-broken", "")
    # the container must not really reboot: logind's request reaches systemd, which refuses
    host.run(["systemctl", "mask", "reboot.target"])
    # the servers start all the same, on the CPU: a slow answer beats none
    host.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
    assert host.show(SERVER, "ActiveState") == "active"
    assert host.show("sleepyllama-gpu-check.service", "ActiveState") == "failed"
    host.run(["systemctl", "restart", SERVER], timeout=60)  # a second start, minutes later
    journal = host.journal("-u", "sleepyllama-gpu-check")
    assert count(r"the GPU is unusable: cuInit failed \(CUDA_ERROR_UNKNOWN 999", journal) == 2
    assert count(r"rebooting to bring the GPU back", journal) == 1, journal
    assert "logind refused to reboot" in journal, journal
    # the request reached logind, which refused only because the test masked the target
    assert "Unit reboot.target is masked, refusing operation" in host.journal("-u",
                                                                             "systemd-logind")
    assert "not rebooting: the last reboot for a broken GPU was" in journal, journal
    events = [json.loads(line)["event"] for line in host.run(
        ["cat", "/var/lib/sleepyllama/ledger.jsonl"]).stdout.splitlines()]
    assert [e for e in events if e.startswith("gpu-")] == ["gpu-failed", "gpu-reboot", "gpu-failed"]
    status = host.run(["/opt/sleepyllama/bin/sleepyllama", "status"], check=False).stdout
    assert "sleepyllama-gpu-check" in status and "failed" in status, status


def log_in(host: Container, user: str) -> str:
    """A real logind session with a terminal, as a login over SSH makes one: su through a pty
    (script), PAM's pam_systemd registering it. Returns its tty."""
    host.run(["useradd", "-m", user])
    host.run(["systemd-run", f"--unit=login-{user}", "script", "-qfec",
              f"su - {user} -c 'sleep 600'", "/dev/null"])
    sessions: list[str] = []

    def listed() -> bool:
        sessions[:] = [line.split() for line in host.run(
            ["loginctl", "list-sessions", "--no-legend"]).stdout.splitlines()
            if f" {user} " in f" {line} "]
        return bool(sessions) and len(sessions[0]) >= 4

    wait_in(host, listed, f"a logind session for {user}", 30)
    return f"/dev/{sessions[0][3]}"


def test_a_person_typing_keeps_the_box_up_and_one_gone_idle_does_not(host: Container) -> None:
    if not os.path.exists("/etc/pam.d/su"):
        pytest.skip("this machine has no PAM configuration for su to open a logind session with")
    ann, bob = log_in(host, "ann"), log_in(host, "bob")
    # logind's idle time for a terminal is its atime, which a keystroke moves: ann typed just
    # now, bob's last key was two hours ago
    host.run(["touch", "-a", ann])
    host.run(["touch", "-a", "-d", "-2 hours", bob])
    idle = "/opt/sleepyllama/bin/sleepyllama-idle"
    verdict = host.run([idle, "--dry-run"]).stderr
    assert re.search(rf"busy: ann is logged in in a su-l session \({ann[5:]}, input \d+s ago\)",
                     verdict), verdict
    assert "bob" not in verdict, verdict
    # the timer's own check (its sandbox, its user) sees the same
    host.run(["systemctl", "start", "sleepyllama-idle.timer"])
    wait_in(host, lambda: "stay awake: busy: ann is logged in" in host.journal(
        "-u", "sleepyllama-idle"), "the idle check to name ann", 30)
    # ann stops typing for two hours too: nobody keeps the box up any more
    host.run(["touch", "-a", "-d", "-2 hours", ann])
    wait_in(host, lambda: "Entering sleep state 'suspend'" in host.journal(), "the suspend", 90)
    assert "no input from 2 users logged in" in host.journal("-u", "sleepyllama-idle")


def test_a_box_set_to_power_off_really_powers_off_and_records_it(tmp_path: Path,
                                                                 install_tree: Path) -> None:
    """[idle] action = "poweroff": logind's PowerOff, for real. The container's systemd shuts
    it down (systemd-nspawn exits 0, as a machine switched off). Its state directory is bound
    from outside, so what it recorded outlives it; the wake at the next boot is the idle check's
    (tests/host/test_idle_check.py), since a container shares the kernel's boot id and boot time."""
    from sleepyllama import ledger

    state = tmp_path / "state"
    state.mkdir()
    box = Container(tmp_path, f"sl-off-{tmp_path.name[-12:]}".replace("_", "-"), install_tree,
                    binds=(f"--bind={state}:/var/lib/sleepyllama",))
    try:
        install(box, tmp_path)
        box.run(["sh", "-c", "echo 'action = \"poweroff\"' >> /etc/sleepyllama/sleepyllama.toml"])
        box.run(["systemctl", "start", "sleepyllama-servers.target"], timeout=60)
        box.run(["systemctl", "start", "sleepyllama-idle.timer"])
        try:
            status = box.process.wait(120)
        except subprocess.TimeoutExpired:
            raise AssertionError("the box did not power off within 120 s\n--- journal ---\n"
                                 f"{box.journal()[-6000:]}") from None
    finally:
        box.stop()
    assert status == 0, f"systemd-nspawn exited {status} (133 is a reboot)\n{box.boot_log()}"
    entries = ledger.read(state / "ledger.jsonl")
    said = [(entry.event, entry.action if isinstance(entry, ledger.Sleep) else entry.kind)
            for entry in entries if isinstance(entry, ledger.Sleep | ledger.Suspend | ledger.Resume)]
    assert said == [("sleep", "poweroff"), ("suspend", "poweroff")], entries
    assert entries[0].reason.startswith("idle for")  # type: ignore[attr-defined]
    assert box.power_state.read_text().strip() == "freeze mem disk"  # no suspend was asked
