"""The address a datagram was sent to, as the kernel says it to a socket on every address."""

from __future__ import annotations

import socket

import pytest

from sleepyllama import datagrams


@pytest.mark.parametrize(("family", "bind", "to", "seen"), [
    (socket.AF_INET, "0.0.0.0", "127.0.0.2", "127.0.0.2"),
    (socket.AF_INET6, "::", "127.0.0.3", "127.0.0.3"),  # dual stack, as ListenDatagram= opens
    (socket.AF_INET6, "::", "::1", "::1"),
    (socket.AF_INET, "127.0.0.1", "127.0.0.1", "127.0.0.1"),
])
def test_the_address_a_datagram_was_sent_to(family: int, bind: str, to: str, seen: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as receiver:
        if family == socket.AF_INET6:
            receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        receiver.bind((bind, 0))
        datagrams.ask_for_destinations(receiver)
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        sender_family = socket.AF_INET6 if ":" in to else socket.AF_INET
        with socket.socket(sender_family, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"hello", (to, port))
            assert datagrams.receive(receiver, 100)[::2] == (b"hello", seen)
