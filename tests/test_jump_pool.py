"""Shared jump host logins: nodes that start together wait for one login, and when it fails they
all fail at once with its error instead of each waiting out a login of its own."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest

from kenornir.connection import ConnectError
from kenornir.connection.jumps import JumpPool


def test_nodes_waiting_for_a_failed_login_fail_with_it_without_trying_again() -> None:
    pool = JumpPool()
    attempts = []
    started = threading.Barrier(6)

    def log_in() -> paramiko.SSHClient:
        attempts.append(time.monotonic())
        time.sleep(0.3)
        raise ConnectError("jump host root@198.18.0.2:22: connection timed out", unreachable=True)

    def node() -> str:
        started.wait()
        with pytest.raises(ConnectError) as error:
            pool.lease(("bastion",), log_in)
        return str(error.value)

    with ThreadPoolExecutor(max_workers=6) as threads:
        reasons = list(threads.map(lambda _: node(), range(6)))

    assert len(attempts) == 1
    assert set(reasons) == {"jump host root@198.18.0.2:22: connection timed out"}
    # A node that comes later tries afresh: the bastion may be back.
    with pytest.raises(ConnectError):
        pool.lease(("bastion",), log_in)
    assert len(attempts) == 2
