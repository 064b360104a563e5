"""The unit files as installed: systemd-analyze verify passes and the exposure score is low."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TESTS, require

UNITS = TESTS.parent / "units"
SERVICES = sorted(UNITS.glob("*.service"))
# the hardening each daemon is held to (systemd-analyze security: 0 = locked down, 10 = exposed);
# the model server needs the GPU devices and W+X memory (CUDA), and runs as its own user; the
# idle check arms Wake-on-LAN (CAP_NET_ADMIN) and sees every user's processes; the GPU check
# reloads nvidia_uvm (CAP_SYS_MODULE) and names who holds it (CAP_SYS_PTRACE)
MAX_EXPOSURE = {"sleepyllama-proxy@.service": 2.0, "sleepyllama-idle.service": 3.0,
                "sleepyllama-sleep.service": 2.5, "sleepyllama-server@.service": 2.0,
                "sleepyllama-gpu-check.service": 2.5, "sleepyllama-web.service": 2.0,
                "sleepyllama-steer.service": 3.0}


def installed_copy(tmp_path: Path) -> Path:
    """The units with /opt/sleepyllama (where install.sh puts the venv) pointing at this test's
    environment, whose bin/ holds the same console scripts: verify checks that they exist."""
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/sleepyllama", sys.prefix))
    return tmp_path


def test_units_verify(tmp_path: Path) -> None:
    require("systemd-analyze")
    directory = installed_copy(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, directory.iterdir()))],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_every_service_has_a_bound() -> None:
    assert sorted(MAX_EXPOSURE) == [service.name for service in SERVICES]


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_service_hardening(unit: str) -> None:
    require("systemd-analyze")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNITS / unit)],
                            capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE[unit], result.stdout


def test_units_carry_restart_prevent_exit_status_78() -> None:
    for service in SERVICES:
        text = service.read_text()
        if "Restart=" in text:
            assert "RestartPreventExitStatus=78" in text, service.name


# Ubuntu 22.04 LTS, where many GPU boxes stay, has systemd 249
OLDEST_SYSTEMD = 249


def test_every_setting_the_units_use_exists_in_the_oldest_systemd_we_support() -> None:
    """Each unit setting that systemd's own NEWS names, first named in a version at or below
    OLDEST_SYSTEMD (NEWS ships with systemd: /usr/share/doc/systemd/NEWS.gz on Debian)."""
    import gzip

    news_file = Path("/usr/share/doc/systemd/NEWS.gz")
    if not news_file.exists():
        pytest.skip(f"{news_file} is not here (Debian's systemd package ships it)")
    news = gzip.decompress(news_file.read_bytes()).decode("utf-8", "replace")
    parts = re.split(r"\nCHANGES WITH (\d+)[^\n]*:\n", "\n" + news)
    by_version = {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}
    settings = {match for unit in UNITS.iterdir()
                for match in re.findall(r"^([A-Z][A-Za-z]+=)", unit.read_text(), re.MULTILINE)}
    assert len(settings) > 40
    too_new = {}
    for setting in sorted(settings):
        named_in = [version for version, text in by_version.items() if setting in text]
        if named_in and min(named_in) > OLDEST_SYSTEMD:
            too_new[setting] = min(named_in)
    assert not too_new, f"settings newer than systemd {OLDEST_SYSTEMD}: {too_new}"
