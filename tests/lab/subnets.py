"""Loopback addresses for lab nodes, and subnet leases so concurrent labs never collide."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

DEFAULT_SUBNET = "127.0.10"
NODES_PER_BLOCK = 250
MAX_NODES = 1000  # node names are node-001 .. node-1000
_LEASE_DIR = Path("/run/lock/kenornir-lab")


def validate_subnet(subnet: str) -> tuple[int, int]:
    """Check a lab subnet ("127.X.Y", loopback only) and return its second and third octets."""
    parts = subnet.split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or parts[0] != "127":
        raise ValueError(f"lab subnet must look like 127.X.Y (loopback only), not {subnet!r}")
    second, third = int(parts[1]), int(parts[2])
    if second > 255 or third > 255:
        raise ValueError(f"lab subnet {subnet!r} has an octet above 255")
    return second, third


def node_address(subnet: str, index: int) -> str:
    """The address of the node with 0-based `index`: <subnet>.<index+1> for the first 250 nodes.

    Beyond 250 the second octet moves on (127.0.10.x, then 127.1.10.x, ...), so labs that use
    different third octets never share an address whatever their size.
    """
    second, third = validate_subnet(subnet)
    block, host = divmod(index, NODES_PER_BLOCK)
    if not 0 <= index < MAX_NODES or second + block > 255:
        raise ValueError(f"node index {index} does not fit in lab subnet {subnet}")
    return f"127.{second + block}.{third}.{host + 1}"


@contextlib.contextmanager
def leased_subnet(first_octet: int = 100, last_octet: int = 249) -> Iterator[str]:
    """Hold an exclusive lease on a free subnet 127.0.N (first_octet <= N <= last_octet).

    Leases are flock()s, so a crashed holder releases its subnet with its last file descriptor;
    a subnet whose first address still has a listener (a lab its crashed holder left running) is
    passed over. `make lab`'s default (127.0.10) stays outside the default range.
    """
    _LEASE_DIR.mkdir(parents=True, exist_ok=True)
    for octet in range(first_octet, last_octet + 1):
        lock = os.open(_LEASE_DIR / f"127.0.{octet}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue
        if address_in_use(f"127.0.{octet}.1", 22):
            os.close(lock)
            continue
        try:
            yield f"127.0.{octet}"
        finally:
            os.close(lock)
        return
    raise RuntimeError(f"no free lab subnet in 127.0.{first_octet}-{last_octet}")


def address_in_use(address: str, port: int) -> bool:
    """Something accepts TCP connections on address:port (on loopback a refusal is immediate)."""
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False
