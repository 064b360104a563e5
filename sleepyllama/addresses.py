"""Addresses as peers and headers spell them: one address in its several spellings, and the
name in an HTTP Host header."""

from __future__ import annotations

import ipaddress

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_of(text: str) -> IP | None:
    """The address `text` spells, as one spelling: an IPv4 client of a dual-stack socket is
    ::ffff:a.b.c.d, an IPv6 one may carry its scope (%eth0); None for a name."""
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def same_address(one: str, other: str) -> bool:
    first = ip_of(one)
    return first is not None and first == ip_of(other)


def host_name(header: str) -> str:
    """The name in a Host header, without its port, lower case, without a root's dot:
    "LLM.home.:3940" is "llm.home", "[::1]:3940" is "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        header = header.partition(":")[0]
    return header.rstrip(".")


def allowed(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None,
            address: str) -> bool:
    """Whether a peer's address lies in one of `networks` (None: every address allows)."""
    if networks is None:
        return True
    ip = ip_of(address)
    return ip is not None and any(ip in network for network in networks)
