"""Established connections on ports the user names ([idle] ports, host/signals/connections.py):
/proc/net/tcp, and a real one."""

from __future__ import annotations

from sleepyllama.host.signals.base import Activity
from sleepyllama.host.signals.connections import ConnectionsSignal, established_local_ports

from conftest import TESTS

TCP = (TESTS / "data" / "proc" / "net-tcp.txt").read_text()


def test_established_connections_by_local_port() -> None:
    # a listener on 22 (0A), an SSH session, an SMB copy, one SMB connection closing (06)
    assert established_local_ports(TCP) == [22, 445]
    reading = ConnectionsSignal([445, 2049], lambda: [TCP]).read()
    assert reading.activity is Activity.BUSY and reading.reason == "1 connection on port 445"
    assert ConnectionsSignal([2049], lambda: [TCP]).read().activity is Activity.IDLE
    assert ConnectionsSignal([22], lambda: ["garbage\nnot a table"]).read().activity is (
        Activity.UNKNOWN)


def test_this_machines_own_table_sees_a_real_connection() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), server.accept()[0]:
            assert ConnectionsSignal([port]).read().activity is Activity.BUSY
