"""Who holds a server's port: ss's lines, the holder's unit from its cgroup, and a real listener."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sleepyllama.host.ports import Listener, foreign_holders, overlaps, parse_ss, unit_of

from conftest import require

SS = """\
LISTEN 0      4096         0.0.0.0:11434      0.0.0.0:*    users:(("ollama",pid=812,fd=3))
LISTEN 0      512             [::]:8080          [::]:*
LISTEN 0      512        127.0.0.1:8080       0.0.0.0:*    users:(("llama-server",pid=900,fd=7))
"""


def test_ss_lines_name_the_process_and_its_unit(tmp_path: Path) -> None:
    (tmp_path / "812").mkdir()
    (tmp_path / "812" / "cgroup").write_text("0::/system.slice/ollama.service\n")
    (tmp_path / "900").mkdir()
    (tmp_path / "900" / "cgroup").write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    assert parse_ss(SS, tmp_path) == [
        Listener("0.0.0.0", "ollama", 812, "ollama.service"),
        Listener("[::]", "", None, None),
        Listener("127.0.0.1", "llama-server", 900, None),
    ]
    assert unit_of(4242, tmp_path) is None  # gone meanwhile


def test_only_addresses_that_collide_count() -> None:
    assert overlaps("0.0.0.0", "127.0.0.1") and overlaps("127.0.0.1", "[::]")
    assert overlaps("localhost", "127.0.0.1") and overlaps("10.0.0.2", "10.0.0.2")
    assert not overlaps("127.0.0.1", "10.0.0.2")


@pytest.mark.root
def test_a_real_listener_is_named_with_its_pid() -> None:
    require("ss")
    if os.geteuid() != 0:
        pytest.skip("ss names another user's process only to root")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        held = foreign_holders("0.0.0.0", port, "sleepyllama-server@llama.service")
        assert [(holder.address, holder.pid) for holder in held] == [("127.0.0.1", os.getpid())]
        assert held[0].command.startswith("python") and str(os.getpid()) in held[0].describe()
        assert foreign_holders("10.9.9.9", port, "sleepyllama-server@llama.service") == []
    assert foreign_holders("0.0.0.0", port, "sleepyllama-server@llama.service") == []
