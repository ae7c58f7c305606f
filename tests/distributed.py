"""Real parts of a --broker run for the tests: Debian's redis-server on loopback (and on a lab
site's veth end, for a worker inside the site), `kenornir worker` processes (one may run inside a
site's network namespace), and redis-cli MONITOR capturing every command the broker sees. Each
is started here and stopped by its own PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.site import NETNS_DIR

REDIS_SERVER = "/usr/bin/redis-server"
READY_LINE = " ready."  # Celery's worker says "<name> ready." once it consumes its queues


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Redis:
    port: int
    password: str
    tls_ca: Path | None  # set when the server speaks TLS only
    process: subprocess.Popen[str]

    def stop(self) -> None:
        """Stop the server now (a broker that goes away mid-run)."""
        self.process.terminate()
        self.process.wait(10)

    def url(self, address: str = "127.0.0.1", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        scheme = "rediss" if self.tls_ca else "redis"
        query = f"?ssl_cert_reqs=required&ssl_ca_certs={self.tls_ca}" if self.tls_ca else ""
        return f"{scheme}://:{secret}@{address}:{self.port}/0{query}"

    def cli(self, *args: str) -> list[str]:
        tls = ["--tls", "--cacert", str(self.tls_ca)] if self.tls_ca else []
        return ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *tls, *args]


@contextmanager
def redis_server(
    workdir: Path, binds: Sequence[str] = ("127.0.0.1",), *, tls: bool = False
) -> Iterator[Redis]:
    """redis-server on the given addresses with a password (and TLS only, when tls), no disk."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = "redis-" + os.urandom(8).hex()
    listen = ["--port", str(port)]
    ca = None
    if tls:
        ca, cert, key = _tls_files(workdir, binds)
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert)]
        listen += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
        listen += ["--tls-auth-clients", "no"]
    # The password goes in a config file read from stdin ("-"), not on the command line.
    server = subprocess.Popen(
        [REDIS_SERVER, "-", *listen, "--bind", *binds, "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdin=subprocess.PIPE,
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdin is not None
    server.stdin.write(f"requirepass {password}\n")
    server.stdin.close()
    redis = Redis(port, password, ca, server)
    try:
        _wait_for(lambda: _answers(redis), 10, "redis-server to answer")
        yield redis
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def monitor(redis: Redis, path: Path) -> Iterator[Path]:
    """redis-cli MONITOR writing every command the server gets to path until the block ends."""
    env = {**os.environ, "REDISCLI_AUTH": redis.password}
    with path.open("wb") as out:
        watcher = subprocess.Popen(redis.cli("monitor"), stdout=out, stderr=out, env=env)
        try:
            _wait_for(lambda: b"OK" in path.read_bytes(), 10, "redis-cli MONITOR")
            yield path
        finally:
            watcher.terminate()
            watcher.wait(10)


class Worker:
    """A `kenornir worker` process; inside a site's network namespace when netns is given."""

    def __init__(
        self,
        workdir: Path,
        broker: str,
        name: str,
        *,
        sites: Sequence[str] = (),
        concurrency: int = 4,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.broker = broker
        self.log = workdir / f"worker-{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "kenornir", "worker", "--name", name]
        cache = cache_dir or workdir / f"cache-{name}"
        argv += ["--concurrency", str(concurrency), "--cache-dir", str(cache)]
        argv += [arg for site in sites for arg in ("--site", site)]
        if netns:  # nsenter execs the worker: its PID is the worker's own
            argv = ["nsenter", f"--net={NETNS_DIR / netns}", *argv]
        environment = {**os.environ, "KENORNIR_BROKER": broker, **(env or {})}
        self.process = subprocess.Popen(
            argv,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=cwd,
        )
        _wait_for(self._ready, 30, f"worker {name} to be ready")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited: {self.text()[-2000:]}")
        return READY_LINE in self.text()


@contextmanager
def workers(*started: Callable[[], Worker]) -> Iterator[list[Worker]]:
    """Start workers in order; every one started is stopped at the end."""
    running: list[Worker] = []
    try:
        for start in started:
            running.append(start())
        yield running
    finally:
        for worker in running:
            worker.stop()


def _answers(redis: Redis) -> bool:
    env = {**os.environ, "REDISCLI_AUTH": redis.password}
    done = subprocess.run(redis.cli("ping"), capture_output=True, text=True, env=env, check=False)
    return done.stdout.strip() == "PONG"


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.1)


def _tls_files(workdir: Path, addresses: Sequence[str]) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for the given IP addresses."""
    import datetime
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kenornir test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = workdir / "ca.pem", workdir / "redis.pem", workdir / "redis.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths
