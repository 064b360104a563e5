"""The test containers themselves: what this machine has installed cannot block their boot, and
one that fails to boot is stopped, not left running."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import Container, missing_requirement


@pytest.fixture(autouse=True)
def containers_possible() -> Iterator[None]:
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    yield


def nspawn_running(name: str) -> bool:
    listed = subprocess.run(["pgrep", "-f", f"systemd-nspawn .* -M {name} "], capture_output=True)
    return listed.returncode == 0


def test_a_service_that_would_block_the_boot_stays_disabled(tmp_path: Path) -> None:
    # like nginx on a host: installed, with [Install], waiting for a network that never comes
    unit = tmp_path / "blocks-boot.service"
    unit.write_text("[Unit]\nWants=network-online.target\nAfter=network-online.target\n"
                    "[Service]\nType=oneshot\nExecStart=/bin/sleep infinity\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    container = Container(tmp_path, "sl-preset-test", boot_timeout=60,
                          binds=(f"--bind-ro={unit}:/etc/systemd/system/blocks-boot.service",))
    try:
        state = container.run(["systemctl", "is-enabled", "blocks-boot.service"], check=False)
        assert state.stdout.strip() == "disabled"
    finally:
        container.stop()


def test_a_container_that_does_not_boot_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not boot"):
        Container(tmp_path, "sl-no-boot-test", boot_timeout=0.01)
    assert not nspawn_running("sl-no-boot-test")
