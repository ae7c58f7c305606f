"""One remote command on its own channel: the launcher line, stdin fed, both output streams
drained as they come, sudo's password answered, and the command's process group killed on the
node when its one deadline passes (feeding included) or the run is stopped."""

from __future__ import annotations

import io
import logging
import secrets
import select
import time
from collections.abc import Callable
from typing import Protocol

import paramiko

from kenornir import shell
from kenornir.connection.output import POLL_SECONDS, CommandResult, LineCallback, RemoteOutput

log = logging.getLogger(__name__)

_STDIN_CHUNK_BYTES = 256 * 1024
# How long a command's output may stay open after it exited (a background child holding it).
_OUTPUT_END_SECONDS = 2.0


class CommandInterrupted(Exception):
    """The run was stopped (Ctrl-C) while a remote command ran; it was killed on the node."""


class ByteSource(Protocol):
    """What run() streams to a command's stdin: a binary file, or anything read like one."""

    def read(self, size: int, /) -> bytes: ...


class Remote:
    """Runs commands over one node's SSH connection, each on a channel of its own."""

    def __init__(
        self,
        client: paramiko.SSHClient,
        host: str,
        *,
        sudo_password: str | None,
        password_prompt: str,
        connect_timeout: float,
        stop_requested: Callable[[], bool],
    ) -> None:
        self.client = client
        self.host = host
        self.sudo_password = sudo_password
        self.password_prompt = password_prompt
        self.connect_timeout = connect_timeout
        self.stop_requested = stop_requested

    def execute(
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
        channel.settimeout(POLL_SECONDS)
        remote = RemoteOutput(channel, on_line, prompt, mark)
        # The node's own `timeout` fires first; the controller's deadline is the fallback.
        deadline = started + limit + 2 * shell.KILL_GRACE_SECONDS
        timed_out = False
        exited_at: float | None = None
        try:
            started_command = prompt is None or self._pass_sudo(channel, remote)
            if started_command:
                self._feed(
                    channel, body, remote, use_sudo=use_sudo, stoppable=stoppable, deadline=deadline
                )
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
                select.select([channel], [], [], POLL_SECONDS)
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

    def _pass_sudo(self, channel: paramiko.Channel, remote: RemoteOutput) -> bool:
        """Answer sudo's password prompt, only if it asks, and wait until the command starts.

        The password goes to stdin only once sudo's own prompt (unique to this connection) has
        shown on stderr: with NOPASSWD or a cached credential sudo asks nothing, and the
        command would read the password instead. Returns whether the command started; when
        sudo refuses the password (it asks again) or never lets the command start, it does not,
        and what sudo said is the command's stderr.
        """
        deadline = time.monotonic() + self.connect_timeout
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
                    f"{self.connect_timeout:g}s (--connect-timeout)"
                )
                return False
            select.select([channel], [], [], POLL_SECONDS)
            remote.drain()
        return remote.pgid.value is not None

    def _feed(
        self,
        channel: paramiko.Channel,
        stdin: ByteSource,
        remote: RemoteOutput,
        *,
        use_sudo: bool,
        stoppable: bool,
        deadline: float,
    ) -> None:
        """Stream stdin to the command, draining its output as we go so neither side stalls.

        A command that exits before reading it all (a full disk) ends the feeding: its exit
        status and stderr tell why, where the closed channel would only say it is closed. So
        does the command's deadline: a node that stops taking data (frozen, a dead link) times
        the command out as one that stops answering does.
        """
        while chunk := stdin.read(_STDIN_CHUNK_BYTES):
            while chunk:
                if time.monotonic() > deadline:
                    return
                if stoppable:
                    self._stop_if_requested(channel, remote, use_sudo)
                try:
                    chunk = chunk[channel.send(chunk) :]
                except TimeoutError:  # no window to send in yet: the node is busy or stalled
                    pass
                except OSError:
                    if self._transport_active() and channel.status_event.is_set():
                        return
                    raise
                remote.drain()

    def _stop_if_requested(
        self, channel: paramiko.Channel, remote: RemoteOutput, use_sudo: bool
    ) -> None:
        """When the run is being stopped: kill the command on the node, CommandInterrupted."""
        if self.stop_requested():
            self._kill_remote(remote.await_pgid(), use_sudo)
            raise CommandInterrupted("interrupted; the command was stopped on the node")

    def _open_channel(self) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise paramiko.SSHException(f"connection to {self.host} is closed")
        return transport.open_session(timeout=self.connect_timeout)

    def _kill_remote(self, pgid: int | None, use_sudo: bool) -> None:
        """Terminate the remote command's process group, then kill it after a grace period."""
        if pgid is None or pgid <= 1:  # unknown; `kill -- -1` would signal every process
            return
        try:
            self.execute(
                shell.stop_group(pgid),
                shell.KILL_GRACE_SECONDS + 5,
                use_sudo=use_sudo,
                stoppable=False,
            )
        except (paramiko.SSHException, OSError) as exc:
            log.warning("could not stop process group %s on %s: %s", pgid, self.host, exc)

    def _transport_active(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()
