"""The `kenornir_ssh` Nornir connection plugin: what a host's inventory entry says, the login,
and its commands (remote.py) and SFTP session on one SSH transport."""

from __future__ import annotations

import difflib
import functools
import hashlib
import secrets
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import paramiko
from nornir.core.configuration import Config
from nornir.core.task import Task

from kenornir.address import host_port
from kenornir.connection.jumps import JumpPool, SharedLogin
from kenornir.connection.login import ConnectError, Login, load_private_key, open_client
from kenornir.connection.output import CommandResult, LineCallback
from kenornir.connection.remote import ByteSource, CommandInterrupted, Remote
from kenornir.hostkeys import HOST_KEY_POLICIES, HostKeyPolicyName, KnownHostsPolicy
from kenornir.secret import reveal

CONNECTION_NAME = "kenornir_ssh"


@dataclass(frozen=True)
class SSHSettings:
    """Run-wide SSH options; every host gets its own copy, overridden by its extras."""

    connect_timeout: float = 10.0
    keepalive_seconds: int = 15
    host_key_policy: HostKeyPolicyName = "accept-new"
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    command_timeout: float = 1800.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SSHSettings:
        """Settings from values (keys that are not settings are ignored; None: the default).

        Raises:
            ValueError: a value of the wrong kind; the message names the key.
        """
        names = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in values.items() if k in names and v is not None}
        for key in ("connect_timeout", "command_timeout", "keepalive_seconds"):
            if key in chosen:
                chosen[key] = _positive_number(key, chosen[key])
        if "keepalive_seconds" in chosen:
            chosen["keepalive_seconds"] = int(chosen["keepalive_seconds"])
        policy = chosen.get("host_key_policy", cls.host_key_policy)
        if policy not in HOST_KEY_POLICIES:
            raise ValueError(
                f"host_key_policy: {policy!r} is not one of {', '.join(HOST_KEY_POLICIES)}"
            )
        if "known_hosts" in chosen:
            chosen["known_hosts"] = Path(chosen["known_hosts"]).expanduser()
        return replace(cls(), **chosen)


def _positive_number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if isinstance(value, bool) or not number > 0:
        raise ValueError(f"{key}: {value!r} is not a positive number of seconds")
    return number


# What a host's connection_options["kenornir_ssh"].extras may say (Nornir's place for a
# connection plugin's own options); key_file is the name nornir_netmiko and nornir_scrapli use.
EXTRAS_KEYS = (
    "auth",
    "private_key_path",
    "key_file",
    "passphrase",
    "sudo",
    "proxy_jump",
    *(f.name for f in fields(SSHSettings)),
)
# What each proxy_jump entry may say: a login of its own.
JUMP_KEYS = (
    "hostname",
    "port",
    "username",
    "password",
    "auth",
    "private_key_path",
    "key_file",
    "passphrase",
)
AUTH_KINDS = ("password", "privateKey", "agent")


def extras_problem(extras: Mapping[str, Any]) -> str | None:
    """Why these extras cannot be used, in one line, or None: a misspelt key must never
    silently mean "use the default"."""
    for key in extras:
        if key not in EXTRAS_KEYS:
            close = difflib.get_close_matches(key, EXTRAS_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(EXTRAS_KEYS)
            return f"unknown kenornir_ssh extras key {key!r}{hint}; known keys: {known}"
    auth = extras.get("auth")
    if auth is not None and auth not in AUTH_KINDS:
        return f"kenornir_ssh extras auth: {auth!r} is not one of {', '.join(AUTH_KINDS)}"
    return None


def _login_identity(hop: Mapping[str, Any]) -> Hashable:
    """What makes two jump host logins the same one: every field, secrets by their digest."""
    identity = []
    for key, value in sorted(hop.items()):
        text = reveal(value) if isinstance(value, str) else repr(value)
        if key in ("password", "passphrase"):
            text = hashlib.sha256((text or "").encode()).hexdigest()
        identity.append((key, text))
    return tuple(identity)


def jump_problem(hop: Mapping[str, Any]) -> str | None:
    """Why a proxy_jump entry cannot be used, in one line, or None."""
    for key in hop:
        if key not in JUMP_KEYS:
            close = difflib.get_close_matches(key, JUMP_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"unknown proxy_jump key {key!r}{hint}; known keys: {', '.join(JUMP_KEYS)}"
    return None if hop.get("hostname") else "has no hostname"


def run_options(configuration: Config | None) -> dict[str, Any]:
    """kenornir's run-wide options, kept in Nornir's `user_defined` configuration."""
    if configuration is None:
        return {}
    options: dict[str, Any] = configuration.user_defined.get("kenornir", {})
    return options


class KenornirSSH:
    """Nornir ConnectionPlugin over paramiko: one SSH transport per host, reused by all stages."""

    def __init__(self) -> None:
        self._client: paramiko.SSHClient | None = None
        self.settings = SSHSettings()
        self.sudo = False
        self.host = ""
        self._remote: Remote | None = None
        # What sudo asks for the password with: unique, so no command output passes for it.
        self.password_prompt = f"[kenornir-sudo:{secrets.token_hex(8)}]"
        self.stop_event: threading.Event | None = None
        self.notices: list[str] = []  # warnings from the login, for the node's log
        self._sftp: paramiko.SFTPClient | None = None
        self._jump_pool: JumpPool | None = None  # the run's (shared), else this host's own
        self._own_jump_pool = False
        self._jumps: list[SharedLogin] = []  # the jump hosts' logins this host uses

    @property
    def connection(self) -> paramiko.SSHClient:
        if self._client is None:
            raise paramiko.SSHException("connection is not open")
        return self._client

    def open(  # noqa: PLR0917 (Nornir's ConnectionPlugin signature)
        self,
        hostname: str | None,
        username: str | None,
        password: str | None,
        port: int | None,
        platform: str | None,
        extras: dict[str, Any] | None = None,
        configuration: Config | None = None,
    ) -> None:
        # Copies only: the inventory's dicts are shared by every worker thread.
        host_extras = {k: v for k, v in (extras or {}).items() if v is not None}
        options = run_options(configuration)
        self.host = host_port(hostname or "", port)
        problem = extras_problem(host_extras)
        try:
            self.settings = SSHSettings.from_mapping({**options.get("ssh", {}), **host_extras})
        except ValueError as exc:
            problem = problem or f"kenornir_ssh extras {exc}"
        if problem is not None:
            raise ConnectError(f"{self.host}: {problem}", unreachable=False)
        self.stop_event = options.get("stop_event")
        shared_pool = options.get("jump_pool")
        self._own_jump_pool = not isinstance(shared_pool, JumpPool)
        self._jump_pool = JumpPool() if self._own_jump_pool else shared_pool
        self.sudo = bool(host_extras.get("sudo", False))
        self.notices = []
        try:
            sock = self._through_jump_hosts(host_extras.get("proxy_jump") or (), hostname, port)
            client, sudo_password = self._log_in(
                hostname or "", port or 22, username, password, host_extras, sock
            )
        except BaseException:
            self._close_jump_hosts()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.settings.keepalive_seconds)
        self._client = client
        self._remote = Remote(
            client,
            self.host,
            sudo_password=sudo_password,
            password_prompt=self.password_prompt,
            connect_timeout=self.settings.connect_timeout,
            stop_requested=self._stop_requested,
        )

    def _log_in(  # noqa: PLR0917 (one login's fields, as Nornir hands them over)
        self,
        hostname: str,
        port: int,
        username: str | None,
        password: str | None,
        extras: Mapping[str, Any],
        sock: paramiko.Channel | None,
    ) -> tuple[paramiko.SSHClient, str | None]:
        """Log in to one host (the node, or a jump host), its host key checked; returns the
        client and the login password (the sudo password too)."""
        key_path = extras.get("private_key_path") or extras.get("key_file")
        password = reveal(password)
        default_auth = "privateKey" if key_path else "password" if password else "agent"
        login = Login(
            host=host_port(hostname, port),
            user=username or "",
            auth=extras.get("auth", default_auth),
            key_path=str(Path(key_path).expanduser()) if key_path else None,
        )
        login_password = password if login.auth == "password" else None
        key = load_private_key(login, reveal(extras.get("passphrase")))
        host_keys = KnownHostsPolicy(
            self.settings.known_hosts, self.settings.host_key_policy, hostname, port
        )
        try:
            client = open_client(
                login,
                hostname=hostname,
                port=port,
                password=login_password,
                key=key,
                host_keys=host_keys,
                timeout=self.settings.connect_timeout,
                sock=sock,
            )
        finally:
            self.notices += host_keys.notices
        return client, login_password

    def _through_jump_hosts(
        self, hops: Sequence[Mapping[str, Any]], hostname: str | None, port: int | None
    ) -> paramiko.Channel | None:
        """Log in to each jump host through the one before it (outermost first) and open a
        channel from the last one to the node; None without jump hosts."""
        sock: paramiko.Channel | None = None
        if not hops or self._jump_pool is None:
            return sock
        targets = [(hop.get("hostname") or "", hop.get("port") or 22) for hop in hops[1:]]
        targets.append((hostname or "", port or 22))
        # A login is shared by nodes whose way to it, and whose checks of its key, are the same.
        chain: tuple[Hashable, ...] = (
            str(self.settings.known_hosts),
            self.settings.host_key_policy,
        )
        for hop, (to_host, to_port) in zip(hops, targets, strict=True):
            hop_host, hop_port = hop.get("hostname") or "", hop.get("port") or 22
            jump = f"jump host {hop.get('username') or ''}@{host_port(hop_host, hop_port)}"
            problem = jump_problem(hop)
            if problem is not None:
                raise ConnectError(f"{self.host}: {jump}: {problem}", unreachable=False)
            chain = (*chain, _login_identity(hop))
            try:
                shared = self._jump_pool.lease(
                    chain, functools.partial(self._jump_login, hop, sock)
                )
            except ConnectError as exc:
                raise ConnectError(f"{jump}: {exc}", unreachable=exc.unreachable) from exc
            self._jumps.append(shared)
            transport = shared.client.get_transport()
            try:
                if transport is None:
                    raise paramiko.SSHException("its connection closed")
                sock = transport.open_channel(
                    "direct-tcpip",
                    (to_host, to_port),
                    ("127.0.0.1", 0),
                    timeout=self.settings.connect_timeout,
                )
            except (paramiko.SSHException, OSError) as exc:
                raise ConnectError(
                    f"{jump} cannot reach {host_port(to_host, to_port)}: {exc}", unreachable=True
                ) from exc
        return sock

    def _jump_login(
        self, hop: Mapping[str, Any], sock: paramiko.Channel | None
    ) -> paramiko.SSHClient:
        hostname, port = hop.get("hostname") or "", hop.get("port") or 22
        user, password = hop.get("username"), hop.get("password")
        return self._log_in(hostname, port, user, password, hop, sock)[0]

    def _close_jump_hosts(self) -> None:
        for shared in reversed(self._jumps):
            if self._jump_pool is not None:
                self._jump_pool.release(shared)
        self._jumps = []
        if self._own_jump_pool and self._jump_pool is not None:
            self._jump_pool.close()

    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session (the login user's), opened on first use."""
        if self._sftp is None:
            self._sftp = self.connection.open_sftp()
            channel = self._sftp.get_channel()
            if channel is not None:
                # Waits for the server this long at most, so a dead link fails the upload.
                channel.settimeout(self.settings.command_timeout)
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._remote = None
        self._close_jump_hosts()

    @property
    def is_active(self) -> bool:
        """The SSH connection is open and its transport still alive."""
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        as_root: bool = True,
        stdin: ByteSource | None = None,
    ) -> CommandResult:
        """Run the shell script command on the node (through sudo on sudo hosts when as_root).

        The script reaches the node on the command's stdin, not in any process's argv, so what
        it holds (a token) shows in no process list or sudo log; only the program it starts
        (keadm) carries its own arguments. When stdin data is given, the script travels in the
        argv instead (it must hold no secret) and the data is streamed to it. Both output
        streams are read as they arrive, so a chatty stderr never blocks stdout. When the
        timeout passes or the run is stopped, the remote process group is killed.
        """
        if self._stop_requested():
            raise CommandInterrupted("interrupted before the command started")
        if self._remote is None:
            raise paramiko.SSHException("connection is not open")
        limit = self.settings.command_timeout if timeout is None else timeout
        return self._remote.execute(
            command, limit, use_sudo=self.sudo and as_root, on_line=on_line, data=stdin
        )

    def _stop_requested(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()


def node_ssh(task: Task) -> KenornirSSH:
    """The host's open kenornir_ssh connection, opened with the run's options on first use, and
    opened again when the one it had died (a cut link)."""
    existing = task.host.connections.get(CONNECTION_NAME)
    if isinstance(existing, KenornirSSH) and not existing.is_active:
        task.host.close_connection(CONNECTION_NAME)
    task.host.get_connection(CONNECTION_NAME, task.nornir.config)
    plugin = task.host.connections[CONNECTION_NAME]
    if not isinstance(plugin, KenornirSSH):
        raise TypeError(f"{CONNECTION_NAME} is not kenornir's connection plugin")
    return plugin
