"""The `kenornir_ssh` Nornir connection plugin: paramiko logins, exec with timeouts and stdin."""

from __future__ import annotations

import difflib
import functools
import io
import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import paramiko
from nornir.core.configuration import Config
from nornir.core.task import Task

from kenornir import shell
from kenornir.hostkeys import HOST_KEY_POLICIES, HostKeyPolicyName, KnownHostsPolicy
from kenornir.secret import reveal

log = logging.getLogger(__name__)

CONNECTION_NAME = "kenornir_ssh"
# Output kept in memory per stream; every line still reaches the line callback.
OUTPUT_TAIL_BYTES = 256 * 1024
_POLL_SECONDS = 0.2
_STDIN_CHUNK_BYTES = 256 * 1024
_TRANSPORT_END_SECONDS = 5.0
# How long a command's output may stay open after it exited (a background child holding it).
_OUTPUT_END_SECONDS = 2.0

StreamName = Literal["stdout", "stderr"]
LineCallback = Callable[[StreamName, str], None]


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
        """The settings values names (others ignored; None: the default).

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
    *(f.name for f in fields(SSHSettings)),
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


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    timed_out: bool = False
    dropped_bytes: int = 0  # output beyond OUTPUT_TAIL_BYTES that only the callback saw


class ConnectError(Exception):
    """Login failed. `unreachable` is True when the node never answered at all."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class CommandInterrupted(Exception):
    """The run was stopped (Ctrl-C) while a remote command ran; it was killed on the node."""


def run_options(configuration: Config | None) -> dict[str, Any]:
    """kenornir's run-wide options, kept in Nornir's `user_defined` configuration."""
    if configuration is None:
        return {}
    options: dict[str, Any] = configuration.user_defined.get("kenornir", {})
    return options


class _StreamCollector:
    """Splits one stream into lines for the callback and keeps a bounded tail of it."""

    def __init__(self, name: StreamName, on_line: LineCallback | None) -> None:
        self.name = name
        self.on_line = on_line
        self.partial = b""
        self.kept = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self.kept += data
        if len(self.kept) > OUTPUT_TAIL_BYTES:
            excess = len(self.kept) - OUTPUT_TAIL_BYTES
            self.dropped += excess
            del self.kept[:excess]
        if self.on_line is None:
            return
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.on_line(self.name, decode(line))

    def finish(self) -> str:
        if self.partial and self.on_line is not None:
            self.on_line(self.name, decode(self.partial))
        self.partial = b""
        return decode(bytes(self.kept))


def decode(data: bytes) -> str:
    """Remote output as text; bytes that are not UTF-8 are shown escaped, never fatal."""
    return data.decode("utf-8", errors="backslashreplace").rstrip("\r")


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


class ByteSource(Protocol):
    """What run() streams to a command's stdin: a binary file, or anything read like one."""

    def read(self, size: int, /) -> bytes: ...


class KenornirSSH:
    """Nornir ConnectionPlugin over paramiko: one SSH transport per host, reused by all stages."""

    def __init__(self) -> None:
        self._client: paramiko.SSHClient | None = None
        self.settings = SSHSettings()
        self.sudo = False
        self.sudo_password: str | None = None
        # What sudo asks for the password with: unique, so no command output passes for it.
        self.password_prompt = f"[kenornir-sudo:{secrets.token_hex(8)}]"
        self.host = ""
        self.stop_event: threading.Event | None = None
        self.notices: list[str] = []  # warnings from the login, for the node's log
        self._sftp: paramiko.SFTPClient | None = None

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
        self.host = f"{hostname}:{port or 22}"
        problem = extras_problem(host_extras)
        try:
            self.settings = SSHSettings.from_mapping({**options.get("ssh", {}), **host_extras})
        except ValueError as exc:
            problem = problem or f"kenornir_ssh extras {exc}"
        if problem is not None:
            raise ConnectError(f"{self.host}: {problem}", unreachable=False)
        self.stop_event = options.get("stop_event")
        self.sudo = bool(host_extras.get("sudo", False))
        key_path = host_extras.get("private_key_path") or host_extras.get("key_file")
        password = reveal(password)
        default_auth = "privateKey" if key_path else "password" if password else "agent"
        login = Login(
            host=self.host,
            user=username or "",
            auth=host_extras.get("auth", default_auth),
            key_path=str(Path(key_path).expanduser()) if key_path else None,
        )
        self.sudo_password = password if login.auth == "password" else None
        key = load_private_key(login, reveal(host_extras.get("passphrase")))
        host_keys = KnownHostsPolicy(
            self.settings.known_hosts, self.settings.host_key_policy, hostname or "", port or 22
        )
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(host_keys)
        timeout = self.settings.connect_timeout
        try:
            client.connect(
                hostname or "",
                port=port or 22,
                username=username,
                password=self.sudo_password,
                pkey=key,
                allow_agent=login.auth == "agent",
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
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
        finally:
            self.notices = host_keys.notices
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.settings.keepalive_seconds)
        self._client = client

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
        limit = self.settings.command_timeout if timeout is None else timeout
        return self._execute(
            command, limit, use_sudo=self.sudo and as_root, on_line=on_line, data=stdin
        )

    def _execute(
        self,
        command: str,
        limit: float,
        *,
        use_sudo: bool,
        on_line: LineCallback | None = None,
        data: ByteSource | None = None,
        stoppable: bool = True,
    ) -> CommandResult:
        prompt = self.password_prompt if use_sudo and self.sudo_password else None
        # Unique per command: no output of anything else passes for it.
        mark = f"{shell.PGID_MARK}{secrets.token_hex(4)}="
        line = shell.launch_line(
            limit,
            mark=mark,
            sudo=use_sudo,
            password_prompt=prompt,
            inline_script=command if data is not None else None,
        )
        body = data if data is not None else io.BytesIO(shell.stdin_script(command))
        # Before the exec request: the node's `timeout` starts after it, so a command it killed
        # always shows at least `limit` seconds here (see timed_out below).
        started = time.monotonic()
        channel = self._open_channel()
        channel.exec_command(line)
        # Sends wait this long at most, so a stalled upload still sees a stop request.
        channel.settimeout(_POLL_SECONDS)
        remote = _RemoteOutput(channel, on_line, prompt, mark)
        # The node's own `timeout` fires first; the controller's deadline is the fallback.
        deadline = started + limit + 2 * shell.KILL_GRACE_SECONDS
        timed_out = False
        exited_at: float | None = None
        try:
            started_command = prompt is None or self._pass_sudo(channel, remote)
            if started_command:
                self._feed(channel, body, remote, use_sudo, stoppable)
            channel.shutdown_write()
            while True:
                if stoppable:
                    self._stop_if_requested(channel, remote, use_sudo)
                if time.monotonic() > deadline:
                    timed_out = True
                    self._kill_remote(remote.await_pgid(), use_sudo)
                    break
                remote.drain()
                if channel.exit_status_ready():
                    exited_at = exited_at or time.monotonic()
                    # A background child (`daemon &`) may hold the output open long after.
                    ended = channel.eof_received or channel.closed
                    ended = ended or time.monotonic() - exited_at > _OUTPUT_END_SECONDS
                    if ended and not (channel.recv_ready() or channel.recv_stderr_ready()):
                        break
                select.select([channel], [], [], _POLL_SECONDS)
            exit_status = -1 if timed_out else channel.recv_exit_status()
        finally:
            channel.close()
        if not started_command and exit_status == 0:
            # sudo let an empty script run after kenornir gave up on it: nothing ran.
            exit_status = -1
        # coreutils timeout exits 124 when it fired on the node (137 when it had to KILL).
        elapsed = time.monotonic() - started
        timed_out = timed_out or (exit_status in (124, 137) and elapsed >= limit)
        return remote.result(exit_status, timed_out)

    def _pass_sudo(self, channel: paramiko.Channel, remote: _RemoteOutput) -> bool:
        """Answer sudo's password prompt, only if it asks, and wait until the command starts.

        The password goes to stdin only once sudo's own prompt (unique to this connection) has
        shown on stderr: with NOPASSWD or a cached credential sudo asks nothing, and the
        command would read the password instead. Returns whether the command started; when
        sudo refuses the password (it asks again) or never lets the command start, it does not,
        and what sudo said is the command's stderr.
        """
        deadline = time.monotonic() + self.settings.connect_timeout
        answered = False
        while remote.pgid.value is None and not channel.exit_status_ready():
            if remote.prompts > 1:  # asked again: the password was refused
                return False
            if remote.prompts == 1 and not answered:
                channel.sendall((f"{self.sudo_password}\n").encode())
                answered = True
            if time.monotonic() > deadline:
                remote.complain(
                    f"kenornir: sudo did not start the command within "
                    f"{self.settings.connect_timeout:g}s (--connect-timeout)"
                )
                return False
            select.select([channel], [], [], _POLL_SECONDS)
            remote.drain()
        return remote.pgid.value is not None

    def _feed(
        self,
        channel: paramiko.Channel,
        stdin: ByteSource,
        remote: _RemoteOutput,
        use_sudo: bool,
        stoppable: bool,
    ) -> None:
        """Stream stdin to the command, draining its output as we go so neither side stalls.

        A command that exits before reading it all (a full disk) ends the feeding: its exit
        status and stderr tell why, where the closed channel would only say it is closed.
        """
        while chunk := stdin.read(_STDIN_CHUNK_BYTES):
            while chunk:
                if stoppable:
                    self._stop_if_requested(channel, remote, use_sudo)
                try:
                    chunk = chunk[channel.send(chunk) :]
                except TimeoutError:  # no window to send in yet: the node is busy or stalled
                    pass
                except OSError:
                    if self.is_active and channel.status_event.is_set():
                        return
                    raise
                remote.drain()

    def _stop_requested(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def _stop_if_requested(
        self, channel: paramiko.Channel, remote: _RemoteOutput, use_sudo: bool
    ) -> None:
        """When the run is being stopped: kill the command on the node, CommandInterrupted."""
        if self._stop_requested():
            self._kill_remote(remote.await_pgid(), use_sudo)
            raise CommandInterrupted("interrupted; the command was stopped on the node")

    def _open_channel(self) -> paramiko.Channel:
        transport = self.connection.get_transport()
        if transport is None or not transport.is_active():
            raise paramiko.SSHException(f"connection to {self.host} is closed")
        return transport.open_session(timeout=self.settings.connect_timeout)

    def _kill_remote(self, pgid: int | None, use_sudo: bool) -> None:
        """Terminate the remote command's process group, then kill it after a grace period."""
        if pgid is None or pgid <= 1:  # unknown; `kill -- -1` would signal every process
            return
        try:
            self._execute(
                shell.stop_group(pgid),
                shell.KILL_GRACE_SECONDS + 5,
                use_sudo=use_sudo,
                stoppable=False,
            )
        except (paramiko.SSHException, OSError) as exc:
            log.warning("could not stop process group %s on %s: %s", pgid, self.host, exc)


class _SudoPromptFilter:
    """Counts sudo's password prompt in stderr and keeps it out of the command's stderr.

    Until the command has started, a prompt may arrive split across reads: a tail that could be
    its beginning is held back.
    """

    def __init__(self, prompt: bytes, stderr: _StreamCollector) -> None:
        self.prompt = prompt
        self.stderr = stderr
        self.count = 0
        self.held = b""

    def feed(self, data: bytes) -> None:
        data = self.held + data
        self.count += data.count(self.prompt)
        data = data.replace(self.prompt, b"")
        keep = next(
            (n for n in range(len(self.prompt) - 1, 0, -1) if data.endswith(self.prompt[:n])), 0
        )
        self.held = data[len(data) - keep :] if keep else b""
        self.stderr.feed(data[: len(data) - keep])

    def flush(self) -> None:
        self.stderr.feed(self.held)
        self.held = b""


class _RemoteOutput:
    """One command's two output streams: the process-group line off stdout, sudo's prompt off
    stderr, the rest to the line callback and a bounded tail."""

    def __init__(
        self,
        channel: paramiko.Channel,
        on_line: LineCallback | None,
        prompt: str | None,
        mark: str,
    ) -> None:
        self.channel = channel
        self.stdout = _StreamCollector("stdout", on_line)
        self.stderr = _StreamCollector("stderr", on_line)
        self.pgid = _PgidReader(self.stdout, mark)
        self.prompt_filter = (
            _SudoPromptFilter(prompt.encode(), self.stderr) if prompt is not None else None
        )

    @property
    def prompts(self) -> int:
        """How often sudo has asked for the password."""
        return self.prompt_filter.count if self.prompt_filter is not None else 0

    def drain(self) -> None:
        while self.channel.recv_ready():
            self.pgid.feed(self.channel.recv(65536))
        while self.channel.recv_stderr_ready():
            data = self.channel.recv_stderr(65536)
            if self.prompt_filter is not None:
                self.prompt_filter.feed(data)
            else:
                self.stderr.feed(data)

    def complain(self, line: str) -> None:
        """Add kenornir's own line to the command's stderr."""
        self.stderr.feed(f"{line}\n".encode())

    def await_pgid(self) -> int | None:
        """The remote process group, waiting for the command's first line if it has not come.

        A stop right after the command was sent would otherwise find no group to kill, and the
        command would run on unattended.
        """
        deadline = time.monotonic() + shell.KILL_GRACE_SECONDS
        while self.pgid.value is None and time.monotonic() < deadline and not self.channel.closed:
            self.drain()
            if self.pgid.value is None:
                select.select([self.channel], [], [], _POLL_SECONDS)
        return self.pgid.value

    def result(self, exit_status: int, timed_out: bool) -> CommandResult:
        if self.prompt_filter is not None:
            self.prompt_filter.flush()
        return CommandResult(
            exit_status=exit_status,
            stdout=self.pgid.finish(),
            stderr=self.stderr.finish(),
            timed_out=timed_out,
            dropped_bytes=self.stdout.dropped + self.stderr.dropped,
        )


class _PgidReader:
    """Finds the process-group line in stdout and remembers the id it names; what follows is
    the command's stdout.

    The launcher prints that line first, but the login shell may print before it (a banner
    from ~/.bashrc): that is not the command's output, and is dropped once the line comes. When
    it never comes (an account whose shell refuses logins), it is all there is, and is kept.
    """

    def __init__(self, stdout: _StreamCollector, mark: str) -> None:
        self.stdout = stdout
        self.mark = mark.encode()
        self.value: int | None = None
        self.head = b""
        self.before_mark = b""

    def feed(self, data: bytes) -> None:
        if self.value is not None:
            self.stdout.feed(data)
            return
        self.head += data
        while self.value is None and b"\n" in self.head:
            line, _, self.head = self.head.partition(b"\n")
            number = line.partition(self.mark)[2]
            if number.isdigit():
                self.value = int(number)
                self.before_mark = b""
            else:
                self.before_mark = (self.before_mark + line + b"\n")[-OUTPUT_TAIL_BYTES:]
        if self.value is not None and self.head:
            rest, self.head = self.head, b""
            self.stdout.feed(rest)

    def finish(self) -> str:
        self.stdout.feed(self.before_mark + self.head)
        self.before_mark = self.head = b""
        return self.stdout.finish()


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
