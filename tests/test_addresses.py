"""Addresses in their several spellings, and the name in a Host header."""

from __future__ import annotations

import ipaddress

import pytest

from sleepyllama import addresses


@pytest.mark.parametrize(("one", "other", "same"), [
    ("192.168.1.5", "::ffff:192.168.1.5", True),
    ("fe80::1%eth0", "fe80::1", True),
    ("192.168.1.5", "192.168.1.6", False),
    ("llm.home", "llm.home", False),  # a name is no address: never the same as one
])
def test_one_address_in_its_spellings(one: str, other: str, same: bool) -> None:
    assert addresses.same_address(one, other) is same


@pytest.mark.parametrize(("header", "name"), [
    ("LLM.home.:3940", "llm.home"), ("[::1]:3940", "::1"), ("[fe80::1]", "fe80::1"),
    ("127.0.0.1", "127.0.0.1"), ("box", "box"), (" box:80 ", "box"),
])
def test_the_name_in_a_host_header(header: str, name: str) -> None:
    assert addresses.host_name(header) == name


def test_allowed_networks() -> None:
    home = (ipaddress.ip_network("192.168.1.0/24"),)
    assert addresses.allowed(None, "10.0.0.1")
    assert addresses.allowed(home, "::ffff:192.168.1.9")
    assert not addresses.allowed(home, "192.168.2.9")
    assert not addresses.allowed(home, "")  # a Unix socket's peer is in no network
