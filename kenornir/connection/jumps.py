"""Logins to jump hosts shared by the nodes behind them.

A site of a hundred nodes behind one bastion needs one SSH login to the bastion, not a hundred:
each node's connection is a direct-tcpip channel of a shared transport. A transport carries at
most CHANNELS_PER_LOGIN nodes at once (a bastion's sshd and its one TCP stream are not meant to
carry a whole fleet), and a jump host gets at most LOGINS_PER_JUMP_HOST transports; past that
nodes share the least busy one. Logins to one jump host are made one at a time, so nodes that
start together wait for the first login instead of each making its own, and a login that failed
fails the nodes that waited for it at once, instead of each waiting out its own timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import paramiko

CHANNELS_PER_LOGIN = 64
LOGINS_PER_JUMP_HOST = 8


@dataclass(eq=False)
class SharedLogin:
    """One jump host login and how many node connections use it now."""

    client: paramiko.SSHClient
    lock: threading.Lock  # its jump host's: users changes under it only
    users: int = 0

    @property
    def is_active(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()


@dataclass
class _JumpHost:
    lock: threading.Lock = field(default_factory=threading.Lock)
    logins: list[SharedLogin] = field(default_factory=list)
    failure: tuple[float, BaseException] | None = None  # the last login's, and when


class JumpPool:
    """Shared logins per jump host (see the module doc); `close` ends them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[Hashable, _JumpHost] = {}

    def lease(self, key: Hashable, log_in: Callable[[], paramiko.SSHClient]) -> SharedLogin:
        """A login to the jump host that key identifies, made by log_in when none can take one
        more node; `release` it when the node's connection closes.

        Raises:
            whatever log_in raised, also to callers that waited for that very login.
        """
        arrived = time.monotonic()
        with self._lock:
            host = self._hosts.setdefault(key, _JumpHost())
        with host.lock:
            host.logins = [login for login in host.logins if login.is_active or login.users]
            live = [login for login in host.logins if login.is_active]
            idle = [login for login in live if login.users < CHANNELS_PER_LOGIN]
            if idle or len(live) >= LOGINS_PER_JUMP_HOST:
                chosen = min(idle or live, key=lambda login: login.users)
            elif host.failure is not None and host.failure[0] > arrived:
                raise host.failure[1]
            else:
                try:
                    chosen = SharedLogin(log_in(), host.lock)
                except BaseException as exc:
                    host.failure = (time.monotonic(), exc)
                    raise
                host.failure = None
                host.logins.append(chosen)
            chosen.users += 1
            return chosen

    def release(self, login: SharedLogin) -> None:
        """The node is done with login; it stays open for the next node (until close)."""
        with login.lock:
            login.users = max(0, login.users - 1)

    def close(self) -> None:
        """Close every login (the end of a run)."""
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            with host.lock:
                for login in host.logins:
                    login.client.close()
                host.logins = []
