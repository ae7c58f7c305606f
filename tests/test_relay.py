"""The edge-link relay's behaviour: bytes pass intact and counted, alone and in front of a lab.

Its rate and delay are figures, not behaviour: `python -m bench --scenario edge-link` measures
them (tests/lab/link_check.py) and prints them beside the link's settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, leased_subnet
from tests.lab.link_check import (
    SOCKET_TIMEOUT,
    Sink,
    ping,
    running_relay,
    send_all,
    transfer,
)
from tests.lab.relay import EdgeLink, LinkCounters, read_counters
from tests.lab.subnets import address_in_use

pytestmark = pytest.mark.lab

LINK = EdgeLink(rate_mbit=20.0, rtt_ms=40.0)
BULK_BYTES = 2**20  # 64 of the relay's 16 KiB chunks through the token bucket


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture
def relay(tmp_path: Path, sink: Sink) -> Iterator[tuple[str, int]]:
    """A 20 Mbit/s, 40 ms relay in front of the sink; yields the address clients connect to."""
    with running_relay(tmp_path, sink.address, LINK) as address:
        yield address


def test_a_bulk_transfer_arrives_intact(relay: tuple[str, int], sink: Sink) -> None:
    payload = os.urandom(BULK_BYTES)
    assert [arrivals.data for arrivals in transfer(relay, sink, [payload])] == [payload]


def test_two_connections_to_one_node_both_arrive_whole(relay: tuple[str, int], sink: Sink) -> None:
    """They share the node's link (one token bucket per direction) and each gets all its bytes
    through; how fast they went together is a figure of the bench's link check."""
    payloads = [os.urandom(BULK_BYTES // 2) for _ in range(2)]
    arrived = transfer(relay, sink, payloads)
    assert sorted(arrivals.data for arrivals in arrived) == sorted(payloads)


def test_every_ping_on_an_open_connection_gets_its_pong(relay: tuple[str, int]) -> None:
    with socket.create_connection(relay, timeout=SOCKET_TIMEOUT) as connection:
        assert [ping(connection) for _ in range(5)] == [b"pong"] * 5


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
    with running_relay(tmp_path, sink.address, EdgeLink(rate_mbit=0, rtt_ms=0)) as address:
        payload = os.urandom(BULK_BYTES)
        assert [arrivals.data for arrivals in transfer(address, sink, [payload])] == [payload]
        assert read_counters(tmp_path)["node-001"] == LinkCounters(len(payload), 4)


def test_a_refusing_node_closes_the_client_connection(tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with (
        running_relay(tmp_path, ("127.0.0.1", closed_port), LINK) as address,
        socket.create_connection(address, timeout=SOCKET_TIMEOUT) as connection,
    ):
        assert connection.recv(16) == b""


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
