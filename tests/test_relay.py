"""The edge-link relay: its rate, its delay and its byte counters, alone and in front of a lab."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab import Lab, leased_subnet
from tests.lab.relay import EdgeLink, LinkCounters, Route, read_counters, start_relay
from tests.lab.subnets import address_in_use

pytestmark = pytest.mark.lab

LINK = EdgeLink(rate_mbit=20.0, rtt_ms=40.0)
BULK_BYTES = 4 * 2**20  # 1.7 s at 20 Mbit/s
SOCKET_TIMEOUT = 30.0


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
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


def relay_to(
    state_dir: Path, target: tuple[str, int], link: EdgeLink = LINK
) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    relay, bound = start_relay(state_dir, [Route("node-001", ("127.0.0.1", 0), target)], link)
    return relay, bound["node-001"]


@pytest.fixture
def relay(tmp_path: Path, sink: Sink) -> Iterator[tuple[str, int]]:
    """A 20 Mbit/s, 40 ms relay in front of the sink; yields the address clients connect to."""
    process, address = relay_to(tmp_path, sink.address)
    yield address
    process.terminate()
    process.wait(SOCKET_TIMEOUT)


def send_all(address: tuple[str, int], payload: bytes) -> bytes:
    """Connect, send payload, half-close, and return everything the far end sent back."""
    with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def mbit_per_second(arrivals: Arrivals) -> float:
    """The rate data arrived at, from the first arrival to the last (no handshake, no delay)."""
    seconds = arrivals.last_at - arrivals.first_at
    return (arrivals.total - arrivals.first_chunk) * 8 / seconds / 1e6


def test_a_bulk_transfer_runs_at_the_link_rate_and_arrives_intact(
    relay: tuple[str, int], sink: Sink
) -> None:
    payload = os.urandom(BULK_BYTES)
    assert send_all(relay, payload) == b"done"
    sink.wait()
    (arrivals,) = sink.connections
    assert arrivals.data == payload
    assert mbit_per_second(arrivals) == pytest.approx(LINK.rate_mbit, rel=0.15)


def test_connections_to_one_node_share_its_link(relay: tuple[str, int], sink: Sink) -> None:
    payload = os.urandom(BULK_BYTES // 2)
    senders = [threading.Thread(target=send_all, args=(relay, payload)) for _ in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(SOCKET_TIMEOUT)
    sink.wait()
    assert [arrivals.total for arrivals in sink.connections] == [len(payload)] * 2
    first = min(arrivals.first_at for arrivals in sink.connections)
    last = max(arrivals.last_at for arrivals in sink.connections)
    combined = 2 * len(payload) * 8 / (last - first) / 1e6
    assert combined == pytest.approx(LINK.rate_mbit, rel=0.15)


def test_a_ping_pong_round_trip_takes_at_least_the_rtt(relay: tuple[str, int]) -> None:
    with socket.create_connection(relay, timeout=SOCKET_TIMEOUT) as connection:
        round_trips = []
        for _ in range(5):
            started = time.monotonic()
            connection.sendall(b"ping")
            assert connection.recv(4) == b"pong"
            round_trips.append(time.monotonic() - started)
    assert min(round_trips) >= LINK.rtt_ms / 1000


def test_byte_counters_match_what_each_side_sent(
    tmp_path: Path, relay: tuple[str, int], sink: Sink
) -> None:
    payload = b"ping"  # the sink answers pong, then done
    assert read_counters(tmp_path) == {"node-001": LinkCounters(to_node=0, from_node=0)}
    assert send_all(relay, payload) == b"pongdone"
    assert send_all(relay, bytes(100_000)) == b"done"
    sink.wait()
    assert read_counters(tmp_path) == {"node-001": LinkCounters(100_004, 12)}


def test_an_unlimited_link_passes_data_unchanged(tmp_path: Path, sink: Sink) -> None:
    process, address = relay_to(tmp_path, sink.address, EdgeLink(rate_mbit=0, rtt_ms=0))
    try:
        payload = os.urandom(BULK_BYTES)
        assert send_all(address, payload) == b"done"
        sink.wait()
        (arrivals,) = sink.connections
        assert arrivals.data == payload
        assert read_counters(tmp_path)["node-001"] == LinkCounters(len(payload), 4)
    finally:
        process.terminate()
        process.wait(SOCKET_TIMEOUT)


def test_a_refusing_node_closes_the_client_connection(tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    process, address = relay_to(tmp_path, ("127.0.0.1", closed_port))
    try:
        with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as connection:
            assert connection.recv(16) == b""
    finally:
        process.terminate()
        process.wait(SOCKET_TIMEOUT)


def test_a_lab_with_an_edge_link_routes_ssh_through_the_relay(tmp_path: Path) -> None:
    with leased_subnet() as subnet:
        lab = Lab(tmp_path / "lab", subnet)
        try:
            lab.up(2, edge_link=LINK)
            first_address = lab.node("node-001").address
            assert {node.port for node in lab.client_nodes} == {2222}
            login = subprocess.run(
                lab.ssh_command("node-002", "echo through the link"),
                capture_output=True,
                text=True,
                timeout=SOCKET_TIMEOUT,
                check=False,
            )
            assert login.stdout == "through the link\n", login.stderr
            counters = Lab(tmp_path / "lab").link_counters()  # found again from lab.json
            assert counters["node-001"] == LinkCounters(0, 0)
            assert counters["node-002"].to_node > 1000
            assert counters["node-002"].from_node > 1000
        finally:
            lab.down()
        assert not address_in_use(first_address, 2222)
