"""What the servers' user (not root) may reach, tried as that user: the model under a home
directory that would fail each start of a server that no longer runs as root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleepyllama.host.server_user import ShutOut, shut_out

from conftest import require

# each tries a path as another user (setpriv), which only root may
pytestmark = pytest.mark.root

OTHER = "nobody"  # a user that exists everywhere and owns nothing here


@pytest.fixture
def place() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to try a path as another user (setpriv)")
    require("setpriv")
    # pytest's tmp_path is root's alone (0700): a place others may enter, like /srv
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        Path(directory).chmod(0o755)
        yield Path(directory)


def test_a_model_in_a_closed_home_names_the_directory_that_shuts_it_out(place: Path) -> None:
    home = place / "home" / "alice"
    (home / "models").mkdir(parents=True)
    (place / "home").chmod(0o755)
    home.chmod(0o700)  # Ubuntu's homes since 21.04
    model = home / "models" / "qwen.gguf"
    model.write_text("gguf")
    model.chmod(0o644)
    found = shut_out([(str(model), "read")], OTHER)
    assert found == [ShutOut(str(model), OTHER, "read", str(home))]
    assert found[0].fix(setfacl=True) == (f"{home} is closed to it: sudo setfacl -m u:{OTHER}:x "
                                          f"{home} (or put the file under /opt or /srv)")
    # Debian ships setfacl in a package of its own: a box without it is told so first
    assert found[0].fix(setfacl=False).startswith(
        f"{home} is closed to it: sudo apt-get install acl, then sudo setfacl -m u:{OTHER}:x")


def test_open_files_pass_and_a_private_program_is_named(place: Path) -> None:
    model = place / "open.gguf"
    model.write_text("gguf")
    model.chmod(0o644)
    program = place / "llama-server"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o700)
    found = shut_out([(str(model), "read"), (str(program), "run")], OTHER)
    assert found == [ShutOut(str(program), OTHER, "run", str(program))]
    assert found[0].fix(setfacl=True) == f"sudo setfacl -m u:{OTHER}:rx {program}"
    assert found[0].fix(setfacl=False) == (f"sudo apt-get install acl, then sudo setfacl -m "
                                           f"u:{OTHER}:rx {program}")


def test_nothing_is_claimed_for_a_user_that_does_not_exist_or_for_root(place: Path) -> None:
    private = place / "private"
    private.mkdir(mode=0o700)
    paths = [(str(private / "m.gguf"), "read")]
    assert shut_out(paths, "no-such-user-here") == []
    assert shut_out(paths, "root") == []
