"""Run keadm on the node: the exact remote command line, streamed output, timeout."""

from __future__ import annotations

import logging
import posixpath
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.config import STAGING_DIR
from kenornir.connection import CommandInterrupted, CommandResult, StreamName, node_ssh
from kenornir.nodelog import node_logger
from kenornir.notes import FileVersion
from kenornir.outcome import StageFailed
from kenornir.secret import host_secrets, reveal
from kenornir.tasks.files import KEADM_MODE
from kenornir.template import mask_secrets

LOG_HEAD_BYTES = 1024 * 1024
LOG_TAIL_BYTES = 256 * 1024
STREAMS: tuple[StreamName, ...] = ("stdout", "stderr")


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


def logged_command(
    task: Task, command: str, what: str, timeout: float | None = None, *, as_root: bool = True
) -> CommandResult:
    """Run a script on the node (through sudo on sudo hosts when as_root), its output streamed
    into the node's log; killed on the node when the timeout passes or the run is stopped.

    Returns:
        The command's result, the host's secrets (kenornir.secret.host_secrets) masked in its
        output.
    Raises:
        CommandInterrupted: the run was stopped; the command was killed on the node.
    """
    ssh = node_ssh(task)
    logged = _NodeLogOutput(node_logger(task.host.name))
    try:
        output = ssh.run(command, timeout=timeout, on_line=logged.line, as_root=as_root)
    except CommandInterrupted as stopped:
        raise CommandInterrupted(f"{what}: {stopped}") from None
    finally:
        logged.finish()
    secrets = host_secrets(task.host.data)
    return replace(
        output,
        stdout=mask_secrets(output.stdout, secrets),
        stderr=mask_secrets(output.stderr, secrets),
    )


def command_failure(task: Task, output: CommandResult, what: str, timeout: float | None) -> str:
    """Why a command failed, in one line ("" when it succeeded)."""
    if output.timed_out:
        limit = node_ssh(task).settings.command_timeout if timeout is None else timeout
        return f"{what} did not finish within {limit:g}s and was killed"
    if output.exit_status == 0:
        return ""
    detail = last_line(output)
    if output.exit_status == shell.REFUSED_EXIT and detail.startswith(shell.OWN_COMPLAINT):
        return f"refused to run {what}: {detail.removeprefix(shell.OWN_COMPLAINT)}"
    return f"{what} failed (exit {output.exit_status})" + (f": {detail}" if detail else "")


def run_remote(task: Task, command: str, what: str, timeout: float | None = None) -> CommandResult:
    """logged_command as root, for a stage: any failure raises.

    Raises:
        StageFailed: non-zero exit or timeout, with `what` naming the command in the reason;
            a guard (shell.guarded) that refused to run it says why.
        CommandInterrupted: the run was stopped; the command was killed on the node.
    """
    output = logged_command(task, command, what, timeout)
    failure = command_failure(task, output, what, timeout)
    if failure:
        exit_code = None if output.timed_out else output.exit_status
        raise StageFailed(failure, exit_code=exit_code)
    return output


def run_command(
    task: Task, command: str, timeout: float | None = None, as_root: bool = False
) -> Result:
    """Run a shell command on the node, e.g. `uptime`: the generic task for any inventory.

    As keadm's: a timeout (default the connection's command_timeout) that kills the command's
    whole process group on the node, output streamed to the node log, the host's secrets masked.

    Args:
        as_root: through sudo on sudo hosts (a login as root runs as root anyway).
    Returns:
        Result with `result` the stdout, `stdout`/`stderr`, `exit_status`; failed when the
        command exited non-zero or timed out (`exception` then says which, in one line).
    """
    log = node_logger(task.host.name)
    log.info("running%s: %s", " as root" if as_root else "", command)
    output = logged_command(task, shell.script(command), "command", timeout, as_root=as_root)
    failure = command_failure(task, output, "command", timeout)
    return Result(
        host=task.host,
        result=output.stdout,
        stdout=output.stdout,
        stderr=output.stderr,
        failed=bool(failure),
        exception=StageFailed(failure) if failure else None,
        changed=True,
        exit_status=output.exit_status,
    )


def run_keadm(
    task: Task,
    workdir: str = STAGING_DIR,
    binary_sha256: str | None = None,
    timeout: float | None = None,
    keadm_cmd: str | None = None,
    *,
    verified: Sequence[FileVersion] = (),
) -> Result:
    """Run keadm in workdir: keadm_cmd (e.g. `reset edge`), by default host.data["keadm_cmd"]
    (the node's rendered keadmCmd).

    Right before keadm starts, the user that runs it (root on sudo nodes) checks in the same
    shell that keadm is the uploaded binary (binary_sha256, when given) and every file of
    verified (copyFrom scripts keadm may run with --pre-run) is the uploaded one, in staging
    dirs no one else can write to (shell.guarded).

    Returns:
        Result with `result` the exit status (0) and the command's stdout/stderr tails.
    Raises:
        StageFailed: keadm failed, timed out, or a file changed since upload.
    """
    if keadm_cmd is None:
        keadm_cmd = task.host.data.get("keadm_cmd")
    if not keadm_cmd:
        raise StageFailed("no keadm command: pass keadm_cmd, or set host.data['keadm_cmd']")
    checked = list(verified)
    if binary_sha256 is not None:
        checked.insert(0, FileVersion(posixpath.join(workdir, "keadm"), binary_sha256, KEADM_MODE))
    line = shell.keadm_line(reveal(keadm_cmd) or "", workdir)
    log = node_logger(task.host.name)
    if checked:
        log.info(
            "checking on the node first, as the user that runs keadm: %s",
            ", ".join(f"{v.remote} has sha256 {v.sha256}" for v in checked),
        )
    # A Secret (KeadmBatchInventory's) reads as the command with its token masked.
    log.info("running: %s", shell.keadm_line(str(keadm_cmd), workdir))
    output = run_remote(task, shell.guarded(line, checked), "keadm", timeout)
    return Result(
        host=task.host,
        result=output.exit_status,
        stdout=output.stdout,
        stderr=output.stderr,
        changed=True,
    )
