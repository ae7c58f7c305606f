"""Logging in to a node: its key (cached, decrypted once), its host key checked, and one line
saying why when the login fails."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from kenornir.hostkeys import KnownHostsPolicy

_TRANSPORT_END_SECONDS = 5.0


class ConnectError(Exception):
    """Login failed. `unreachable` is True when the node never answered at all."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


_GCM_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def gcm_first_transport(sock: Any, /, **options: Any) -> paramiko.Transport:
    """A paramiko Transport that offers AES-GCM first.

    paramiko's default, aes-ctr with HMAC-SHA2, computes every packet's MAC in Python (a tenth
    of an upload's controller time in the bench profile); GCM authenticates inside the cipher's
    C code. The other ciphers stay as fallbacks for servers without GCM.
    """
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    security.ciphers = _GCM_CIPHERS + tuple(c for c in security.ciphers if c not in _GCM_CIPHERS)
    return transport


@dataclass(frozen=True)
class Login:
    """Who logs in where and how, for messages that name the credential that failed."""

    host: str
    user: str
    auth: str  # password, privateKey or agent
    key_path: str | None = None


@functools.lru_cache(maxsize=64)
def _read_private_key(path: str, passphrase: str | None, mtime_ns: int) -> paramiko.PKey:
    # Cached because an encrypted key costs a key derivation per load and every node of a run
    # usually shares one key; mtime_ns is part of the key so a replaced file is read again.
    password = passphrase.encode() if passphrase is not None else None
    # from_path hands the password to cryptography, which wants bytes despite the str hint.
    return paramiko.PKey.from_path(path, password=password)  # type: ignore[arg-type]


def load_private_key(login: Login, passphrase: str | None) -> paramiko.PKey | None:
    """The login's private key (None unless auth is privateKey).

    Raises:
        ConnectError: the key cannot be read or decrypted; the message says which and why.
    """
    if login.auth != "privateKey" or login.key_path is None:
        return None
    path = login.key_path
    try:
        mtime_ns = Path(path).stat().st_mtime_ns
        return _read_private_key(path, None, mtime_ns)
    except OSError as exc:
        raise ConnectError(
            f"cannot read private key {path}: {exc.strerror or exc}", unreachable=False
        ) from None
    except TypeError:  # cryptography's way of saying the key is encrypted
        pass
    except (ValueError, paramiko.SSHException) as exc:
        raise ConnectError(
            f"{path} is not a usable private key: {exc}", unreachable=False
        ) from None
    if passphrase is None:
        raise ConnectError(
            f"private key {path} is encrypted and no passphrase is configured "
            "(set privateKeyAuth.passphrase)",
            unreachable=False,
        )
    try:
        return _read_private_key(path, passphrase, mtime_ns)
    except (TypeError, ValueError, paramiko.SSHException):
        raise ConnectError(
            f"wrong passphrase for private key {path} (check privateKeyAuth.passphrase)",
            unreachable=False,
        ) from None


def classify_connect_error(
    exc: Exception, login: Login, timeout: float, *, answered: bool
) -> ConnectError:
    """One line saying why the login failed, and whether the node answered at all.

    answered: the node sent its SSH banner before the failure.
    """
    host = login.host
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectError(_auth_refused(exc, login), unreachable=False)
    if isinstance(exc, paramiko.BadHostKeyException | paramiko.SSHException) and (
        "host key" in str(exc)
    ):
        return ConnectError(str(exc), unreachable=False)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return ConnectError(f"connection refused by {host}", unreachable=True)
    if isinstance(exc, socket.timeout | TimeoutError):
        return ConnectError(f"no answer from {host} within {timeout:g}s", unreachable=True)
    # paramiko stops waiting for the handshake at `timeout` with "No existing session", often
    # before its own banner timeout could report the real cause.
    waited_in_vain = "No existing session" in str(exc)
    if isinstance(exc, paramiko.SSHException) and waited_in_vain and answered:
        return ConnectError(
            f"SSH handshake with {host} did not finish within {timeout:g}s", unreachable=False
        )
    if isinstance(exc, paramiko.SSHException) and (waited_in_vain or "banner" in str(exc)):
        return ConnectError(f"no SSH banner from {host} within {timeout:g}s", unreachable=True)
    if isinstance(exc, OSError):
        return ConnectError(f"cannot reach {host}: {exc.strerror or exc}", unreachable=True)
    return ConnectError(f"SSH login to {host} failed: {exc}", unreachable=False)


def _auth_refused(exc: paramiko.AuthenticationException, login: Login) -> str:
    account = f"{login.user}@{login.host}"
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(exc.allowed_types) or "none"
        return f"{account} does not take {login.auth} logins (it allows: {allowed})"
    if login.auth == "password":
        return f"password refused by {account}"
    if login.auth == "privateKey":
        return (
            f"key {login.key_path} refused by {account} (is its public key in "
            f"{login.user}'s ~/.ssh/authorized_keys?)"
        )
    return f"no ssh-agent key accepted by {account} (is SSH_AUTH_SOCK set and the key added?)"


def open_client(
    login: Login,
    *,
    hostname: str,
    port: int,
    password: str | None,
    key: paramiko.PKey | None,
    host_keys: KnownHostsPolicy,
    timeout: float,
    sock: paramiko.Channel | None = None,
) -> paramiko.SSHClient:
    """A logged-in paramiko client; ConnectError (one line) when the login fails.

    sock: a channel to the host through a jump host, else a TCP connection is made.
    """
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(host_keys)
    try:
        client.connect(
            hostname,
            port=port,
            username=login.user,
            password=password,
            pkey=key,
            allow_agent=login.auth == "agent",
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=sock,
            transport_factory=functools.partial(host_keys.transport, gcm_first_transport),
        )
    except BaseException as exc:
        transport = client.get_transport()
        answered = transport is not None and bool(transport.remote_version)
        client.close()
        if transport is not None and transport.is_alive():
            # Its thread may still be reading the socket just closed; it ends at once, but
            # let it end (and log that) now, while this run's log is the one listening:
            # logged after the run it would reach the terminal as a traceback.
            transport.join(_TRANSPORT_END_SECONDS)
        if isinstance(exc, Exception):
            failure = host_keys.explain(exc)
            raise classify_connect_error(failure, login, timeout, answered=answered) from exc
        raise
    return client
