"""This machine's own OS booted as a container with real systemd and logind (systemd-nspawn).

--volatile=yes: a tmpfs root with the host's /usr read-only, so nothing the test does inside
survives it. Bind mounts bring in the checkout, the Python environment, and the few places the
test must write below /usr. Commands run inside through nsenter into the container's init.

The container's /etc starts empty, so its first boot enables units by preset, and every unit
without a preset is enabled: whatever this machine has installed (nginx, a database) would start
in the container, and some wait for network-online.target, which never comes in a private
network. A preset file "disable *" bound into /etc keeps the boot to what systemd itself wants
statically (journald, dbus, logind); each test enables what it installs.

logind reports CanSuspend "na" in a container because /sys/power/state is not writable there;
a writable regular file bound over it makes the whole suspend path real (logind, sleep.target,
systemd-suspend.service, systemd-sleep and its hooks) and harmless: the kernel is never asked,
systemd-sleep's final write of "mem" lands in the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from sleepyllama.compat import tomllib

REPO = Path(__file__).resolve().parent.parent
STAND_INS = REPO / "tests" / "stand-ins"
# outside /tmp (the units' PrivateTmp= hides it) and outside /root and /home (ProtectHome=)
INSTALL_TREES = Path("/run/sleepyllama-tests")


def build_install_tree(target: Path, installed_at: str = "/opt/sleepyllama") -> Path:
    """A virtual environment like the /opt/sleepyllama that install.sh makes: the package copied
    in (not editable: the checkout may live where a unit cannot see), its console scripts, and
    the dependencies this test environment already has (pystemd is compiled), so no network."""
    if (target / "bin" / "python").exists():
        return target
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base_python = Path(sys.base_prefix) / "bin" / version
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(target)], check=True)
    site = target / "lib" / version / "site-packages"
    for item in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "sleepyllama" in item.name or item.name.startswith("__editable__"):
            continue
        if item.is_dir():
            shutil.copytree(item, site / item.name, symlinks=True)
        else:
            shutil.copy2(item, site / item.name)
    shutil.copytree(REPO / "sleepyllama", site / "sleepyllama",
                    ignore=shutil.ignore_patterns("__pycache__"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name, entry in scripts.items():
        module, function = entry.split(":")
        script = target / "bin" / name
        script.write_text(f"#!{installed_at}/bin/python\nimport sys\nfrom {module} import {function}\n"
                          f"sys.exit({function}())\n")
        script.chmod(0o755)
    return target


def build_wheelhouse(target: Path) -> Path:
    """The package and every dependency as wheels (pystemd built once), so that install.sh can
    run offline in a container: PIP_NO_INDEX=1 PIP_FIND_LINKS=target."""
    if not any(target.glob("sleepyllama-*.whl")):
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "wheel", "--wheel-dir", str(target), str(REPO)], check=True)
        subprocess.run([*pip, "download", "-d", str(target), "setuptools>=77", "wheel"], check=True)
    return target


def missing_requirement() -> str | None:
    """Why a container cannot run here, or None."""
    if os.geteuid() != 0:
        return "booting a container needs root (run the tests as ./run-tests does)"
    for program in ("systemd-nspawn", "nsenter"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install systemd-container util-linux)"
    return None


class Container:
    def __init__(self, directory: Path, name: str, install_tree: Path | None = None,
                 binds: tuple[str, ...] = (), network_veth: bool = False,
                 boot_timeout: float = 120) -> None:
        self.directory = directory
        self.name = name
        self.power_state = directory / "power-state"
        self.power_state.write_text("freeze mem disk\n")
        self.sleep_hooks = directory / "system-sleep"
        self.local_bin = directory / "local-bin"
        for folder in (self.sleep_hooks, self.local_bin):
            folder.mkdir()
        presets = directory / "nothing-enabled.preset"
        presets.write_text("# the host's installed services stay out of the test container\n"
                           "disable *\n")
        options = [f"--bind={self.power_state}:/sys/power/state",
                   f"--bind-ro={presets}:/etc/systemd/system-preset/00-sleepyllama-tests.preset",
                 f"--bind={self.sleep_hooks}:/usr/lib/systemd/system-sleep",
                 f"--bind={self.local_bin}:/usr/local/bin",
                 f"--bind-ro={REPO}", f"--bind={directory}", *binds]
        if install_tree is not None:
            options.append(f"--bind-ro={install_tree}:/opt/sleepyllama")
        # a network of its own: the container's fixed ports (8080, 3939) meet nothing of the host's
        options.append("--network-veth" if network_veth else "--private-network")
        if not sys.base_prefix.startswith("/usr"):
            options.append(f"--bind-ro={sys.base_prefix}")  # the interpreter the venv is made of
        self.log = (directory / "container.log").open("wb")
        self.process = subprocess.Popen(
            ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit",
             "-M", name, *options, "-b", "--", "systemd.firstboot=off"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.init_pid = self._find_init()
            self._wait_until_booted(boot_timeout)
        except BaseException:
            self.stop()  # a container that did not boot is stopped all the same, not leaked
            raise

    def _find_init(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {self.boot_log()}")
            children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                                      capture_output=True, text=True).stdout.split()
            if children:
                # wait until the child has become systemd (after nspawn's own setup)
                pid = int(children[0])
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return pid
                except OSError:
                    pass  # one of nspawn's short-lived setup processes, gone already
            time.sleep(0.1)
        raise RuntimeError(f"no init in the container: {self.boot_log()}")

    def _wait_until_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while (left := deadline - time.monotonic()) > 0:
            # answers nothing until systemd inside has its bus; then waits for the boot to end
            try:
                state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                 timeout=left).stdout.strip()
            except subprocess.TimeoutExpired:
                break
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        try:
            jobs = self.run(["systemctl", "list-jobs", "--no-pager"], check=False, timeout=10).stdout
        except subprocess.TimeoutExpired:
            jobs = "(systemctl list-jobs did not answer)"
        raise RuntimeError(f"container did not boot ({state or 'no answer'}); waiting on:\n{jobs}\n"
                           f"{self.boot_log()}")

    def boot_log(self) -> str:
        return (self.directory / "container.log").read_text(errors="replace")[-3000:]

    def run(self, command: list[str], *, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["nsenter", "-t", str(self.init_pid), "-a", *command],
                                capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def write(self, path: str, text: str, mode: str = "644") -> None:
        self.run(["mkdir", "-p", str(Path(path).parent)])
        self.run(["sh", "-c", f'cat > "$0" && chmod {mode} "$0"', path], input=text)

    def journal(self, *args: str) -> str:
        return self.run(["journalctl", "--no-pager", "-o", "short-monotonic", *args],
                        check=False).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # nspawn asks the container's systemd to power off
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def give_a_wakeable_card(container: Container) -> None:
    """A network card that Wake-on-LAN can wake, as a GPU box has: a veth (which has no
    Wake-on-LAN of its own) as the default route, and a stand-in ethtool that answers for it
    with Wake-on-LAN supported and off (tests/stand-ins/ethtool; its state in /run/fake-ethtool,
    which the idle service may write). The route leads nowhere: the container's network is its own."""
    shutil.copy(STAND_INS / "ethtool", container.local_bin / "ethtool")
    container.run(["ip", "link", "add", "wol0", "type", "veth", "peer", "name", "wol1"])
    container.run(["ip", "link", "set", "wol0", "up"])
    container.run(["ip", "route", "add", "default", "dev", "wol0"])
    container.run(["mkdir", "-p", "/run/fake-ethtool"])
    container.write("/etc/systemd/system/sleepyllama-idle.service.d/fake-ethtool.conf",
                    "[Service]\nReadWritePaths=/run/fake-ethtool\n")
