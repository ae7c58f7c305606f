"""A remote command's output: two streams read as they come, split into lines for the node log,
a bounded tail kept, the process-group line and sudo's prompt taken out."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import paramiko

from kenornir import shell

# Output kept in memory per stream; every line still reaches the line callback.
OUTPUT_TAIL_BYTES = 256 * 1024
POLL_SECONDS = 0.2

StreamName = Literal["stdout", "stderr"]
LineCallback = Callable[[StreamName, str], None]


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    timed_out: bool = False
    dropped_bytes: int = 0  # output beyond OUTPUT_TAIL_BYTES that only the callback saw


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


class RemoteOutput:
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
                select.select([self.channel], [], [], POLL_SECONDS)
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
