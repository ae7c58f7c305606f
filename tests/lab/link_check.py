"""Measuring an edge link: what a bulk transfer and a ping-pong through the relay really get.

tests/test_relay.py uses these pieces to check what the relay does (bytes intact, pings
answered); bench/ uses `measure_link` to show the rate and round trip its edge-link scenario ran
on. The figures depend on the machine's load, so they are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.relay import EdgeLink, Route, start_relay

SOCKET_TIMEOUT = 30.0
ROUND_TRIPS = 5  # timed on an open connection, after its first
# The relay's route name for the sink: any name, the relay counts bytes per route.
NODE = "node-001"
# How long the bulk transfer lasts on a rate-limited link: long enough that the token bucket's
# burst and the first chunk weigh little in the rate.
_TRANSFER_SECONDS = 2.0
_UNLIMITED_BULK_BYTES = 4 * 2**20


class LinkCheckError(RuntimeError):
    """The relay did not start, changed or lost data, or left a ping unanswered."""


@dataclass
class Arrivals:
    """What a sink connection received, when the first and the last chunk came."""

    data: bytearray = field(default_factory=bytearray)
    first_chunk: int = 0
    first_at: float = 0.0
    last_at: float = 0.0

    @property
    def total(self) -> int:
        return len(self.data)


class Sink:
    """A TCP server on 127.0.0.1 that reads each connection to EOF, answering b"ping" with
    b"pong" and closing with a b"done" once its peer has finished sending."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.server.getsockname()
        self.connections: list[Arrivals] = []
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # closed
            arrivals = Arrivals()
            self.connections.append(arrivals)
            thread = threading.Thread(target=self._read, args=(connection, arrivals), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read(self, connection: socket.socket, arrivals: Arrivals) -> None:
        with connection:
            while chunk := connection.recv(65536):
                now = time.monotonic()
                if not arrivals.data:
                    arrivals.first_at, arrivals.first_chunk = now, len(chunk)
                arrivals.data += chunk
                arrivals.last_at = now
                if chunk == b"ping":
                    connection.sendall(b"pong")
            connection.sendall(b"done")

    def wait(self) -> None:
        """Until every connection so far has been read to its end."""
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT)

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def running_relay(
    state_dir: Path, target: tuple[str, int], link: EdgeLink
) -> Iterator[tuple[str, int]]:
    """A relay with this link in front of target; yields the address clients connect to."""
    try:
        relay, bound = start_relay(state_dir, [Route(NODE, ("127.0.0.1", 0), target)], link)
    except RuntimeError as error:
        raise LinkCheckError(str(error)) from None
    try:
        yield bound[NODE]
    finally:
        relay.terminate()
        relay.wait(SOCKET_TIMEOUT)


@contextlib.contextmanager
def relayed_sink(state_dir: Path, link: EdgeLink) -> Iterator[tuple[Sink, tuple[str, int]]]:
    """A sink behind a relay with this link; yields the sink and the relay's address."""
    sink = Sink()
    try:
        with running_relay(state_dir, sink.address, link) as address:
            yield sink, address
    finally:
        sink.close()


def send_all(address: tuple[str, int], payload: bytes) -> bytes:
    """Connect, send payload, half-close, and return everything the far end sent back."""
    with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def transfer(address: tuple[str, int], sink: Sink, payloads: Sequence[bytes]) -> list[Arrivals]:
    """Send each payload on a connection of its own, all at once, through the relay at address
    to sink; returns what the sink received on those connections (in the order they arrived)."""
    already = len(sink.connections)
    with ThreadPoolExecutor(max_workers=len(payloads)) as senders:
        answers = list(senders.map(lambda payload: send_all(address, payload), payloads))
    if answers != [b"done"] * len(payloads):
        raise LinkCheckError(f"the sink's answers through the relay were {answers}")
    sink.wait()
    return sink.connections[already:]


def ping(connection: socket.socket) -> bytes:
    """Send b"ping" on an open connection to the sink; returns the 4 bytes that come back."""
    connection.sendall(b"ping")
    answer = b""
    while len(answer) < 4 and (chunk := connection.recv(4 - len(answer))):
        answer += chunk
    return answer


def round_trips(address: tuple[str, int], count: int) -> list[float]:
    """The seconds each of count pings, one after the other on one connection, took to bring
    back the sink's pong."""
    seconds = []
    with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as connection:
        for number in range(1, count + 1):
            started = time.monotonic()
            answer = ping(connection)
            seconds.append(time.monotonic() - started)
            if answer != b"pong":
                raise LinkCheckError(f"ping {number} was answered {answer!r}, not b'pong'")
    return seconds


def mbit_per_second(arrivals: Sequence[Arrivals]) -> float:
    """The rate data arrived at over these connections together, from the first arrival to the
    last: no handshake, no delay, and not the first chunk (the bucket's burst sent it at once)."""
    first = min(arrivals, key=lambda connection: connection.first_at)
    seconds = max(connection.last_at for connection in arrivals) - first.first_at
    if seconds <= 0:
        raise LinkCheckError("the data arrived in one chunk: too little to measure a rate")
    return (
        (sum(connection.total for connection in arrivals) - first.first_chunk) * 8 / seconds / 1e6
    )


@dataclass(frozen=True)
class LinkFigures:
    """What a link was measured to do, beside what it was set to."""

    link: EdgeLink
    bulk_bytes: int
    rate_mbit: float  # one connection's bulk transfer
    shared_rate_mbit: float  # two connections to the same node at once, together
    # A new connection's first ping-pong: it also waits for the relay's stand-in for the TCP
    # handshake, so it should take two round trips.
    first_ping_ms: float
    round_trips_ms: tuple[float, ...]  # the ping-pongs after it, on the same open connection


def bulk_bytes(link: EdgeLink) -> int:
    """The size of the check's bulk transfer: about _TRANSFER_SECONDS on this link."""
    if link.rate_mbit <= 0:  # unlimited, as the relay reads it
        return _UNLIMITED_BULK_BYTES
    return int(link.bytes_per_second * _TRANSFER_SECONDS)


def measure_link(state_dir: Path, link: EdgeLink) -> LinkFigures:
    """Measure a relay with this link in front of a local sink: a bulk transfer alone, then two
    connections sharing the link, then ping-pongs on a new connection.

    Raises:
        LinkCheckError: the relay did not start, changed or lost data, or left a ping
            unanswered: the figures would mean nothing.
    """
    size = bulk_bytes(link)
    with relayed_sink(state_dir, link) as (sink, address):
        alone = [os.urandom(size)]
        alone_arrived = _intact(transfer(address, sink, alone), alone)
        shared = [os.urandom(size // 2) for _ in range(2)]
        shared_arrived = _intact(transfer(address, sink, shared), shared)
        first_ping, *pings = round_trips(address, ROUND_TRIPS + 1)
    return LinkFigures(
        link,
        size,
        mbit_per_second(alone_arrived),
        mbit_per_second(shared_arrived),
        first_ping * 1000,
        tuple(seconds * 1000 for seconds in pings),
    )


def _intact(arrivals: list[Arrivals], payloads: Sequence[bytes]) -> list[Arrivals]:
    if sorted(bytes(connection.data) for connection in arrivals) != sorted(payloads):
        sizes = [connection.total for connection in arrivals]
        raise LinkCheckError(
            f"the relay changed or lost data: sent {[len(p) for p in payloads]} bytes,"
            f" {sizes} arrived"
        )
    return arrivals
