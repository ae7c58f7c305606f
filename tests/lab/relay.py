"""A simulated edge link per lab node: a TCP relay that delays and rate-limits each direction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

RELAY_PORT = 2222
# Reads of at most this size: at 20 Mbit/s one chunk is 6.5 ms on the wire, fine-grained enough
# that the shaped stream looks smooth to TCP and to the ping-pong of an SSH handshake.
_CHUNK = 16 * 1024
# The token bucket's depth: how far a link that sat idle may send ahead of its rate.
_BURST = 16 * 1024
_CONFIG_FILE = "relay.json"
_MODULE = "tests.lab.relay"


@dataclass(frozen=True)
class EdgeLink:
    """What every node's link does to each direction: a rate (0: unlimited) and a round trip."""

    rate_mbit: float = 20.0
    rtt_ms: float = 40.0

    @property
    def bytes_per_second(self) -> float:
        return self.rate_mbit * 1e6 / 8

    @property
    def one_way_seconds(self) -> float:
        return self.rtt_ms / 2000


@dataclass(frozen=True)
class Route:
    """One node's link: clients connect to `listen`, the relay forwards to `target`."""

    name: str
    listen: tuple[str, int]
    target: tuple[str, int]


@dataclass(frozen=True)
class LinkCounters:
    """Payload bytes the relay passed over one node's link, per direction."""

    to_node: int
    from_node: int


class _Direction:
    """One direction of one node's link, shared by all of that node's connections."""

    def __init__(self, link: EdgeLink) -> None:
        self.rate = link.bytes_per_second
        self.delay = link.one_way_seconds
        self.passed = 0
        self._next_free = 0.0

    def departure(self, size: int, now: float) -> float:
        """When a chunk read now has fully left the sender's end (the token bucket)."""
        if self.rate <= 0:
            return now
        # _next_free is the bucket as a clock: it may lag `now` by at most the burst's worth of
        # tokens; a chunk the saved tokens cover leaves at once, never before it was read.
        start = max(self._next_free, now - _BURST / self.rate)
        self._next_free = start + size / self.rate
        return max(now, self._next_free)


class _Relay:
    def __init__(self, routes: Sequence[Route], link: EdgeLink) -> None:
        self.link = link
        # Per node: (client to node, node to client).
        self.directions = {route.name: (_Direction(link), _Direction(link)) for route in routes}

    def counters(self) -> dict[str, LinkCounters]:
        return {
            name: LinkCounters(to_node.passed, from_node.passed)
            for name, (to_node, from_node) in self.directions.items()
        }

    async def serve(
        self, route: Route, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        # The relay accepts at once on loopback; wait a round trip for the TCP handshake the
        # real link would have cost before anything can flow.
        await asyncio.sleep(2 * self.link.one_way_seconds)
        try:
            node_in, node_out = await asyncio.open_connection(*route.target)
        except OSError:
            client_out.close()
            return
        to_node, from_node = self.directions[route.name]
        pumps = [
            asyncio.create_task(_pump(client_in, node_out, to_node)),
            asyncio.create_task(_pump(node_in, client_out, from_node)),
        ]
        try:
            # A reset on either side ends the connection both ways.
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            if any(task.exception() for task in done):
                for task in pumps:
                    task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (node_out, client_out):
                writer.close()


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: _Direction
) -> None:
    """Copy one direction: chunks leave at the link rate and arrive a one-way delay later."""
    loop = asyncio.get_running_loop()

    def arrive(chunk: bytes) -> None:
        if sink.is_closing():
            return
        if chunk:
            sink.write(chunk)
            direction.passed += len(chunk)
        elif sink.can_write_eof():
            sink.write_eof()

    previous_arrival = 0.0
    while True:
        chunk = await source.read(_CHUNK)
        departure = direction.departure(len(chunk), loop.time())
        # Timers due at the same instant may run in any order: keep this stream's strictly
        # increasing so its chunks arrive in the order they were sent.
        arrival = max(departure + direction.delay, previous_arrival + 1e-6)
        loop.call_at(arrival, arrive, chunk)
        previous_arrival = arrival
        if not chunk:  # the FIN travels like data; keep the connection until it arrived
            await asyncio.sleep(arrival - loop.time())
            return
        # The sender only gets to send on once this chunk has left: that is the rate limit,
        # and it pushes back on the sender's TCP window as a slow link would.
        await asyncio.sleep(max(0.0, departure - loop.time()))
        await sink.drain()  # raises once the far side is gone; waits while its buffer is full


def _load_config(path: Path) -> tuple[list[Route], EdgeLink, Path]:
    config = json.loads(path.read_text())
    routes = [
        Route(entry["name"], tuple(entry["listen"]), tuple(entry["target"]))
        for entry in config["routes"]
    ]
    return routes, EdgeLink(**config["link"]), Path(config["control"])


async def _run(config_path: Path) -> None:
    routes, link, control = _load_config(config_path)
    relay = _Relay(routes, link)
    servers: list[asyncio.Server] = []
    bound: dict[str, tuple[str, int]] = {}
    for route in routes:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route
        ) -> None:
            await relay.serve(route, reader, writer)

        server = await asyncio.start_server(handle, *route.listen, reuse_address=True)
        servers.append(server)
        bound[route.name] = server.sockets[0].getsockname()[:2]

    async def answer_counters(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counters = {name: asdict(value) for name, value in relay.counters().items()}
        writer.write(json.dumps(counters).encode())
        await writer.drain()
        writer.close()

    servers.append(await asyncio.start_unix_server(answer_counters, str(control)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    print(json.dumps(bound), flush=True)  # the ready line, with the ports actually bound
    await stop.wait()
    for server in servers:
        server.close()


# The lab's side: start the relay process, find it again, ask it for its counters.


def start_relay(
    state_dir: Path, routes: Sequence[Route], link: EdgeLink
) -> tuple[subprocess.Popen[bytes], dict[str, tuple[str, int]]]:
    """Start the relay process for these routes; returns it and each route's bound address.

    A listen port of 0 gets a free port. Stop the relay by its pid (SIGTERM).

    Raises:
        RuntimeError: the relay did not start; the message carries its log.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / _CONFIG_FILE
    control_path(state_dir).unlink(missing_ok=True)
    config = {
        "link": asdict(link),
        "routes": [asdict(route) for route in routes],
        "control": str(control_path(state_dir)),
    }
    config_path.write_text(json.dumps(config, indent=1) + "\n")
    log_path = state_dir / "relay.log"
    with log_path.open("ab") as log_file:
        relay = subprocess.Popen(
            [sys.executable, "-m", _MODULE, str(config_path)],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )
    assert relay.stdout is not None  # started with stdout=PIPE
    with relay.stdout:
        ready = relay.stdout.readline()
    try:
        bound = {name: (host, int(port)) for name, (host, port) in json.loads(ready).items()}
    except ValueError:
        relay.wait()
        raise RuntimeError(f"the edge-link relay did not start: {_last_line(log_path)}") from None
    return relay, bound


def control_path(state_dir: Path) -> Path:
    return state_dir / "relay.sock"


def is_relay(pid: int, state_dir: Path) -> bool:
    """pid is the relay started for state_dir (and not a process that reused a recorded pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _MODULE.encode() in argv and str(state_dir / _CONFIG_FILE).encode() in argv


def read_counters(state_dir: Path, timeout: float = 5.0) -> dict[str, LinkCounters]:
    """The relay's byte counters per route name, as of now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
        control.settimeout(timeout)
        control.connect(str(control_path(state_dir)))
        answer = b""
        while chunk := control.recv(65536):
            answer += chunk
    return {name: LinkCounters(**value) for name, value in json.loads(answer).items()}


def _last_line(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def main(argv: Sequence[str]) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
