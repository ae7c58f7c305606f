"""Run keadm on the node: the exact remote command line, streamed output, timeout."""

from __future__ import annotations

import logging
import posixpath
import shlex
from collections import deque

from nornir.core.task import Result, Task

from kenornir.connection import CommandInterrupted, CommandResult, StreamName, node_ssh
from kenornir.nodelog import node_logger
from kenornir.outcome import StageFailed
from kenornir.tasks.transfer import KEADM_MODE, same_file_test
from kenornir.template import remote_command_line

# Exit status of the guard that refuses a keadm binary altered after it was uploaded.
BINARY_CHANGED_EXIT = 197
LOG_HEAD_BYTES = 1024 * 1024
LOG_TAIL_BYTES = 256 * 1024
STREAMS: tuple[StreamName, ...] = ("stdout", "stderr")


def keadm_command_line(keadm_cmd: str, workdir: str, binary_sha256: str | None = None) -> str:
    """The remote line (template.remote_command_line), guarded by the binary's sha256 if given.

    The guard runs in the same shell right before keadm, so nothing can swap the binary between
    the check and the run. A keadm kenornir uploaded is vouched for by the note it left beside
    it (transfer.same_file_test: no need to read 80 MB again); any other is hashed.
    """
    line = remote_command_line(keadm_cmd, workdir)
    if binary_sha256 is None:
        return line
    binary = posixpath.join(workdir, "keadm")
    quoted = shlex.quote(binary)
    # openssl hashes about 3x faster than coreutils (SHA extensions); sha256sum where it is absent.
    digest = f"{{ openssl dgst -sha256 -r {quoted} 2>/dev/null || sha256sum {quoted}; }}"
    hashed = f'[ "$({digest} | cut -d" " -f1)" = {binary_sha256} ]'
    guard = (
        f"{{ {same_file_test(binary, binary_sha256, KEADM_MODE)} || {hashed}; }} || "
        f"{{ echo 'kenornir: keadm on the node is not the uploaded binary' >&2; "
        f"exit {BINARY_CHANGED_EXIT}; }}"
    )
    return f"{guard} && {line}"


def last_line(output: CommandResult) -> str:
    """The most telling line of a failed command: its last stderr line, else its last stdout."""
    for text in (output.stderr, output.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


class _NodeLogOutput:
    """Writes a command's output lines to the node log, within a budget per stream.

    The log keeps the first LOG_HEAD_BYTES and the last LOG_TAIL_BYTES of each stream and
    says how much it left out between them: a command that floods 50 MB would otherwise cost
    that much disk per node and minutes of log formatting, for lines nobody reads.
    """

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.head_bytes = dict.fromkeys(STREAMS, 0)
        self.tails: dict[str, deque[str]] = {stream: deque() for stream in STREAMS}
        self.tail_bytes = dict.fromkeys(STREAMS, 0)
        self.skipped_bytes = dict.fromkeys(STREAMS, 0)

    def line(self, stream: StreamName, text: str) -> None:
        size = len(text.encode()) + 1
        if not self.tails[stream] and self.head_bytes[stream] + size <= LOG_HEAD_BYTES:
            self.head_bytes[stream] += size
            self.log.info("%s: %s", stream, text)
            return
        tail = self.tails[stream]
        tail.append(text)
        self.tail_bytes[stream] += size
        while self.tail_bytes[stream] > LOG_TAIL_BYTES:
            dropped = len(tail.popleft().encode()) + 1
            self.tail_bytes[stream] -= dropped
            self.skipped_bytes[stream] += dropped

    def finish(self) -> None:
        """Log the tails held back, after a note on what was left out before them."""
        for stream in STREAMS:
            if self.skipped_bytes[stream]:
                self.log.info(
                    "(%d bytes of %s not logged here: the log keeps the first %d KiB and the "
                    "last %d KiB of each stream of a command)",
                    self.skipped_bytes[stream],
                    stream,
                    LOG_HEAD_BYTES // 1024,
                    LOG_TAIL_BYTES // 1024,
                )
            for text in self.tails[stream]:
                self.log.info("%s: %s", stream, text)
            self.tails[stream].clear()


def run_remote(task: Task, command: str, what: str, timeout: float | None = None) -> CommandResult:
    """Run command as root (sudo on sudo hosts), its output into the node's log.

    Raises:
        StageFailed: non-zero exit or timeout, with `what` naming the command in the reason.
        CommandInterrupted: the run was stopped; the command was killed on the node.
    """
    ssh = node_ssh(task)
    logged = _NodeLogOutput(node_logger(task.host.name))
    try:
        output = ssh.run(command, timeout=timeout, on_line=logged.line)
    except CommandInterrupted as stopped:
        raise CommandInterrupted(f"{what}: {stopped}") from None
    finally:
        logged.finish()
    if output.timed_out:
        limit = ssh.settings.command_timeout if timeout is None else timeout
        raise StageFailed(f"{what} did not finish within {limit:g}s and was killed", exit_code=None)
    if output.exit_status != 0:
        detail = last_line(output)
        raise StageFailed(
            f"{what} failed (exit {output.exit_status})" + (f": {detail}" if detail else ""),
            exit_code=output.exit_status,
        )
    return output


def run_keadm(
    task: Task,
    workdir: str,
    binary_sha256: str | None = None,
    timeout: float | None = None,
    keadm_cmd: str | None = None,
) -> Result:
    """Run keadm in workdir: the node's rendered command, or keadm_cmd (e.g. `reset edge`).

    Returns:
        Result with `result` the exit status (0) and the command's stdout/stderr tails.
    Raises:
        StageFailed: keadm failed, timed out, or the binary changed since upload.
    """
    data = task.host.data
    command = keadm_command_line(keadm_cmd or data["keadm_cmd"], workdir, binary_sha256)
    log = node_logger(task.host.name)
    if binary_sha256 is not None:
        log.info(
            "checking on the node first: keadm is the uploaded binary, sha256 %s", binary_sha256
        )
    shown = keadm_cmd or data["keadm_cmd_masked"]
    log.info("running: %s", remote_command_line(shown, workdir))
    try:
        output = run_remote(task, command, "keadm", timeout)
    except StageFailed as failure:
        if failure.exit_code == BINARY_CHANGED_EXIT:
            raise StageFailed(
                "keadm binary on the node differs from the uploaded one (sha256 mismatch); "
                "refused to run it",
                exit_code=BINARY_CHANGED_EXIT,
            ) from failure
        raise
    return Result(
        host=task.host,
        result=output.exit_status,
        stdout=output.stdout,
        stderr=output.stderr,
        changed=True,
    )
