"""A restart of the proxy that drops no request and cuts no stream.

On its way out (SIGTERM: `systemctl restart`, a package upgrade, `sleepyllama restart` after an
edit it could not reload) the proxy hands every held client and every spliced connection to
systemd's file-descriptor store (FileDescriptorStoreMax= in the unit): the sockets, each
direction's pipe with the bytes in flight, and a memfd that says what they are. At the next
start systemd passes them back with the listening socket (LISTEN_FDNAMES), and the new process
holds and splices them on as if nothing happened. A plain `systemctl stop` lets systemd close
them, as before.

A client whose request was being read or checked (reception.py: the proxy did not yet know the
backend ready) goes too, with the bytes read of it, to be read again. Not kept: a client in the
middle of an answer the proxy writes itself (from the cache, a wake's progress): it is closed as
before, and a client retries those.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from dataclasses import dataclass, field

from sleepyllama import files, systemd
from sleepyllama.proxy.client import Client
from sleepyllama.proxy.splice import PumpState, Splice

log = logging.getLogger(__name__)

STATE = f"{systemd.STORED_PREFIX}state"
VERSION = 1
MAX_STATE = 16 << 20  # 512 held clients with 64 KiB heads each fit well within it


@dataclass
class Kept:
    """Connections in transit between two processes, with the fds they need by name."""

    held: list[dict] = field(default_factory=list)
    splices: list[dict] = field(default_factory=list)
    fds: dict[str, int] = field(default_factory=dict)

    def add_held(self, client: Client) -> None:
        name = f"{systemd.STORED_PREFIX}h{len(self.held)}"
        self.fds[name] = client.sock.fileno()
        self.held.append({"fd": name, "peer": client.peer, "request": client.request,
                          "agent": client.agent, "address": client.address,
                          "arrived": client.arrived,
                          "deadline": client.deadline,
                          "prefix": base64.b64encode(client.prefix).decode(),
                          # its request is to be read again (reception), not held as it is
                          "unread": not client.received})

    def add_splice(self, client: socket.socket, backend: socket.socket,
                   pumps: tuple[PumpState, PumpState]) -> None:
        stem = f"{systemd.STORED_PREFIX}s{len(self.splices)}"
        entry: dict = {"client": f"{stem}c", "backend": f"{stem}b", "pumps": []}
        self.fds[entry["client"]], self.fds[entry["backend"]] = client.fileno(), backend.fileno()
        for direction, pump in zip("ud", pumps, strict=True):
            pipe = None
            if pump.pipe is not None:
                pipe = [f"{stem}{direction}r", f"{stem}{direction}w"]
                self.fds[pipe[0]], self.fds[pipe[1]] = pump.pipe
            entry["pumps"].append({"fill": pump.fill, "eof": pump.source_eof,
                                   "done": pump.done, "pipe": pipe})
        self.splices.append(entry)

    def document(self) -> bytes:
        return json.dumps({"version": VERSION, "held": self.held,
                           "splices": self.splices}).encode()


def room() -> int:
    """How many fds the unit's store takes: FDSTORE (set by systemd >= 254, and by our unit
    for older ones, equal to FileDescriptorStoreMax=); 0 when run by hand."""
    try:
        return max(0, int(os.environ.get("FDSTORE", "0")))
    except ValueError:
        return 0


def hand_over(held: list[Client], splices: list[Splice], notifier: systemd.Notifier) -> int:
    """Give what fits of `held` and `splices` to the fd store; how many connections went. Those
    that did not fit are left to the caller to close."""
    space = room() - 1  # one for the state
    kept = Kept()
    for client in held:
        if len(kept.fds) + 1 > space:
            break
        kept.add_held(client)
    for splice in splices:
        if len(kept.fds) + 6 > space:
            break
        kept.add_splice(splice.client, splice.backend, splice.freeze())
    count = len(kept.held) + len(kept.splices)
    if not count:
        return 0
    state = os.memfd_create("sleepyllama-handover", os.MFD_CLOEXEC)
    try:
        os.write(state, kept.document())
        # the state first: what comes back without it is closed, not guessed at
        sent = notifier.store_fds([(STATE, state), *kept.fds.items()])
    finally:
        os.close(state)
    if sent < len(kept.fds) + 1:
        log.warning("the fd store took %d of %d fds: some connections will be closed",
                    sent, len(kept.fds) + 1)
    log.info("handed %d held client(s) and %d connection(s) to systemd for the next start",
             len(kept.held), len(kept.splices))
    return count


def _pump(entry: object) -> tuple[int, bool, bool, list[str] | None]:
    if not isinstance(entry, dict):
        raise ValueError("a pump is not an object")
    fill, eof, done, pipe = entry.get("fill"), entry.get("eof"), entry.get("done"), entry.get("pipe")
    if not (isinstance(fill, int) and fill >= 0 and isinstance(eof, bool) and isinstance(done, bool)):
        raise ValueError("a pump's fill, eof or done is malformed")
    if done != (pipe is None) or not (pipe is None or (
            isinstance(pipe, list) and len(pipe) == 2 and all(isinstance(n, str) for n in pipe))):
        raise ValueError("a pump's pipe is malformed")
    return fill, eof, done, pipe


def parse(document: bytes) -> tuple[list[dict], list[dict]]:
    """The held clients and splices of a state document, checked for shape; ValueError else."""
    state = json.loads(document)
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ValueError("not a handover state of this version")
    held, splices = state.get("held"), state.get("splices")
    if not isinstance(held, list) or not isinstance(splices, list):
        raise ValueError("held or splices is not a list")
    for entry in held:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in
                                                ("fd", "peer", "request", "agent", "prefix"))
                and isinstance(entry.get("address", ""), str)  # absent before 2026-12
                and isinstance(entry.get("unread", False), bool)  # absent before 2026-12-07
                and files.finite(entry.get("arrived")) and files.finite(entry.get("deadline"))):
            raise ValueError("a held client is malformed")
        base64.b64decode(entry["prefix"], validate=True)
    for entry in splices:
        if not (isinstance(entry, dict) and isinstance(entry.get("client"), str)
                and isinstance(entry.get("backend"), str) and isinstance(entry.get("pumps"), list)
                and len(entry["pumps"]) == 2):
            raise ValueError("a splice is malformed")
        for pump in entry["pumps"]:
            _pump(pump)
    return held, splices


@dataclass
class Taken:
    held: list[Client] = field(default_factory=list)
    splices: list[tuple[socket.socket, socket.socket, tuple[PumpState, PumpState]]] = field(
        default_factory=list)


def _read_state(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, size = [], 0
    while chunk := os.read(fd, 1 << 16):
        size += len(chunk)
        if size > MAX_STATE:
            raise ValueError(f"larger than {MAX_STATE} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def take_back(stored: dict[str, int], notifier: systemd.Notifier) -> Taken:
    """What the last process handed over, ready to hold and splice on. Out of the store at once
    (its copies would keep connections open); anything malformed or incomplete is closed."""
    notifier.forget_stored(stored)
    fds = dict(stored)
    taken = Taken()
    state = fds.pop(STATE, None)
    try:
        if state is None:
            if fds:
                log.warning("%d fd(s) came back from the fd store without their state: closed",
                            len(fds))
            return taken
        try:
            held, splices = parse(_read_state(state))
        except (OSError, ValueError) as error:
            log.warning("the handed-over state is unreadable (%s): its %d fd(s) closed",
                        error, len(fds))
            return taken
        for entry in held:
            fd = fds.pop(entry["fd"], None)
            if fd is None:
                continue  # closed while stored: the client hung up
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            taken.held.append(Client(sock, entry["peer"], entry.get("address", ""),
                                     entry["arrived"], entry["deadline"],
                                     received=not entry.get("unread", False),
                                     prefix=base64.b64decode(entry["prefix"]),
                                     request=entry["request"], agent=entry["agent"]))
        for entry in splices:
            names = [entry["client"], entry["backend"]] + [
                name for pump in entry["pumps"] for name in (pump["pipe"] or [])]
            if any(name not in fds for name in names):
                continue  # part of it is gone: what is left of it is closed below
            client, backend = (socket.socket(fileno=fds.pop(name)) for name in names[:2])
            pumps = tuple(PumpState(pump["fill"], pump["eof"], pump["done"],
                                    (fds.pop(pump["pipe"][0]), fds.pop(pump["pipe"][1]))
                                    if pump["pipe"] else None) for pump in entry["pumps"])
            for sock in (client, backend):
                sock.setblocking(False)
            taken.splices.append((client, backend, (pumps[0], pumps[1])))
        return taken
    finally:
        for fd in [*fds.values(), *([state] if state is not None else [])]:
            os.close(fd)
        if taken.held or taken.splices:
            log.info("took back %d held client(s) and %d connection(s) from before the restart",
                     len(taken.held), len(taken.splices))
