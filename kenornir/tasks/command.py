"""Run keadm on the node: the exact remote command line, streamed output, timeout."""

from __future__ import annotations

import posixpath
import shlex

from nornir.core.task import Result, Task

from kenornir.connection import CommandResult, node_ssh
from kenornir.nodelog import node_logger
from kenornir.outcome import StageFailed
from kenornir.template import remote_command_line

# Exit status of the guard that refuses a keadm binary altered after it was uploaded.
BINARY_CHANGED_EXIT = 197


def keadm_command_line(keadm_cmd: str, workdir: str, binary_sha256: str | None = None) -> str:
    """The remote line (template.remote_command_line), guarded by the binary's sha256 if given.

    The guard runs in the same shell right before keadm, so nothing can swap the binary between
    the check and the run.
    """
    line = remote_command_line(keadm_cmd, workdir)
    if binary_sha256 is None:
        return line
    binary = shlex.quote(posixpath.join(workdir, "keadm"))
    guard = (
        f"{{ printf '%s  %s\\n' {binary_sha256} {binary} | sha256sum --check --status || "
        f"{{ echo 'kenornir: keadm on the node is not the uploaded binary' >&2; "
        f"exit {BINARY_CHANGED_EXIT}; }}; }}"
    )
    return f"{guard} && {line}"


def last_line(output: CommandResult) -> str:
    """The most telling line of a failed command: its last stderr line, else its last stdout."""
    for text in (output.stderr, output.stdout):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def run_remote(task: Task, command: str, what: str, timeout: float | None = None) -> CommandResult:
    """Run command as root (sudo on sudo hosts), every output line into the node's log.

    Raises:
        StageFailed: non-zero exit or timeout, with `what` naming the command in the reason.
    """
    log = node_logger(task.host.name)
    output = node_ssh(task).run(
        command, timeout=timeout, on_line=lambda stream, line: log.info("%s: %s", stream, line)
    )
    if output.dropped_bytes:
        log.info(
            "(%d bytes of output not kept in memory; all of it is above)", output.dropped_bytes
        )
    if output.timed_out:
        raise StageFailed(f"{what} did not finish in time and was killed", exit_code=None)
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
        log.info("checking on the node first: keadm sha256 %s", binary_sha256)
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
