"""UDP datagrams with the address they were sent to: a socket bound to every address (as
systemd's ListenDatagram=3941 is) learns it from the kernel (IP_PKTINFO, IPV6_PKTINFO), so that
a command can be bound to the box it was sent to (steer.py)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # linux/in.h; Python names it on some builds only
_ANCILLARY = socket.CMSG_SPACE(64)


def ask_for_destinations(sock: socket.socket) -> None:
    """Have the kernel tell, with each datagram, the address it was sent to. An IPv6 socket
    gets IPv4 ones (dual stack) as ::ffff:a.b.c.d."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    if sock.family == socket.AF_INET6:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)


def receive(sock: socket.socket, size: int) -> tuple[bytes, tuple, str]:
    """(datagram, sender, the address it was sent to); that address is "" where the kernel
    did not say and the socket is bound to every address."""
    datagram, ancillary, _flags, sender = sock.recvmsg(size, _ANCILLARY)
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return datagram, sender, str(ipaddress.IPv4Address(data[8:12]))  # ipi_addr
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 16:
            address = ipaddress.IPv6Address(data[:16])  # ipi6_addr
            return datagram, sender, str(address.ipv4_mapped or address)
    bound = str(sock.getsockname()[0])
    return datagram, sender, "" if bound in ("0.0.0.0", "::") else bound
