"""Files onto the node: the staging dir, uploads that skip unchanged files, and copyFrom."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.config import STAGING_DIR, TransferMode
from kenornir.connection import KenornirSSH, node_ssh, run_options
from kenornir.nodelog import node_logger
from kenornir.notes import FileVersion, RemoteState, parse_remote_state, part_path
from kenornir.outcome import StageFailed
from kenornir.tasks.files import KEADM_MODE, FileToSend, file_versions, part_paths
from kenornir.tasks.sftp import send_file

# Files one upload command takes: its script travels in one argv word (stdin carries the files),
# Linux takes at most 128 KiB in one, and the script names each path about six times.
_FILES_PER_COMMAND = 32


def staging_owner(ssh: KenornirSSH) -> str:
    """Who must own the staging dirs, for shell.staging_check: root ("0") on sudo nodes, where
    root runs keadm from them, else the login user ("")."""
    return "0" if ssh.sudo else ""


def stage_dir(task: Task, path: str = STAGING_DIR, verdict: str | None = None) -> Result:
    """Create the staging dir, refusing one that another user could tamper with.

    /tmp is shared on the node: a dir (or any parent under /tmp) that is a symlink, owned by
    another user or writable by others would let them swap keadm before it runs. On sudo nodes
    the dirs belong to root, who runs keadm from them, so not even the login user's other
    processes can change what runs. The dirs are made one by one, each checked before anything
    is made in it, so nothing is ever created through a planted link.

    Args:
        verdict: what a probe already found of the dirs (facts.probe_node); asked otherwise.
    """
    ssh = node_ssh(task)
    if verdict is None:
        verdict = ssh.run(shell.staging_check(path, staging_owner(ssh)), as_root=False).stdout
    verdict = verdict.strip()
    if verdict == "ok":
        return Result(host=task.host, result=path, changed=False)
    if verdict != "missing":
        raise StageFailed(verdict.removeprefix("unsafe: "))
    output = ssh.run(shell.make_staging(path))
    if output.exit_status != 0:
        complaint = output.stderr.strip().splitlines()[-1:] or [f"exit {output.exit_status}"]
        raise StageFailed(f"cannot create {path}: {complaint[0]}")
    return Result(host=task.host, result=path, changed=True)


@dataclass(frozen=True)
class _Outgoing:
    """One file on its way: what is read locally, from where, and how it lands."""

    item: FileToSend
    source: Path  # the file itself, or the packed form chosen for this node
    incoming: shell.Incoming

    @property
    def offset(self) -> int:
        return self.incoming.offset

    @property
    def size(self) -> int:
        """Bytes of source the stream carries: what the node does not hold yet."""
        return self.incoming.sent_size - self.incoming.offset


class _Concatenation:
    """Reads the outgoing files one after the other, each exactly its announced bytes."""

    def __init__(self, outgoing: Sequence[_Outgoing], opened: Sequence[BinaryIO]) -> None:
        for out, data in zip(outgoing, opened, strict=True):
            data.seek(out.offset)
        self._pending = list(zip(outgoing, opened, strict=True))
        self._left = outgoing[0].size if outgoing else 0

    def read(self, size: int, /) -> bytes:
        while self._pending:
            current, data = self._pending[0]
            if self._left:
                chunk = data.read(min(size, self._left))
                if not chunk:
                    raise OSError(errno.EIO, f"{current.source} shrank while it was being sent")
                self._left -= len(chunk)
                return chunk
            self._pending.pop(0)
            self._left = self._pending[0][0].size if self._pending else 0
        return b""


def _outgoing(
    pending: Sequence[tuple[FileToSend, str]], remote_state: RemoteState, *, fresh: bool
) -> list[_Outgoing]:
    """The files in sending order (packed last, the biggest last of all: the last one takes the
    rest of the stream, and `head` would copy it through a pipe in 8 KiB reads), each from where
    a cut upload left its part (unless fresh)."""
    staged = []
    for item, sha256 in pending:
        source = item.packed.sent_for(remote_state.has_zstd) if item.packed else item.local
        staged.append((item, sha256, source, source.stat().st_size))
    staged.sort(key=lambda entry: (entry[0].packed is not None, entry[3]))
    outgoing = []
    for item, sha256, source, sent_size in staged:
        form = item.packed.form(source) if item.packed else ""
        version = FileVersion(item.remote, sha256, item.mode)
        held = 0 if fresh else remote_state.held_parts.get(part_path(item.remote, sha256, form), 0)
        incoming = shell.Incoming(
            version,
            size=item.local.stat().st_size,
            sent_size=sent_size,
            last=item is staged[-1][0],
            unpack=item.packed.unpacker(source) if item.packed else (),
            form=form,
            offset=held if held <= sent_size else 0,
        )
        outgoing.append(_Outgoing(item, source, incoming))
    return outgoing


def _failure_note(ssh: KenornirSSH, outgoing: Sequence[_Outgoing]) -> str:
    """Why a failed upload may have failed as far as disk space goes ("" when unknown); the
    parts of what was sent go first: they may be what fills the disk, and there is nothing to
    resume when the connection held."""
    directory = posixpath.dirname(outgoing[0].item.remote)
    parts = [out.incoming.sent_part for out in outgoing]
    try:
        ssh.run(shell.script(shell.words("rm", "-f", "--", *parts)))
        output = ssh.run(shell.free_space(directory), as_root=False)
    except (OSError, paramiko.SSHException):
        return ""
    fields = output.stdout.split()
    if len(fields) < 6 or not fields[3].isdigit():
        return ""
    free_kib, mount = int(fields[3]), fields[5]
    needed_kib = sum(-(-out.item.local.stat().st_size // 1024) for out in outgoing)
    if needed_kib > free_kib:
        return f"; no space left: needs {needed_kib} KiB, {free_kib} KiB free on {mount}"
    return f" ({free_kib} KiB free on {mount})"


def _send(ssh: KenornirSSH, outgoing: Sequence[_Outgoing]) -> int:
    """Send every file in one command on the node (shell.receive), fed one stream; returns its
    exit status when the node found what arrived damaged (shell.MISMATCH_EXIT), else 0.

    One command instead of a few SFTP round trips per file, and packed files are unpacked as
    their bytes arrive. It runs as whoever runs keadm (root on sudo nodes), who alone may write
    the staging dir.
    """
    names = ", ".join(out.item.remote for out in outgoing[:3])
    if len(outgoing) > 3:
        names += f" and {len(outgoing) - 3} more"
    # What arrived stays in part files when the connection is lost: the next try resumes there.
    lost = f"SSH connection lost while uploading {names}"
    try:
        with contextlib.ExitStack() as files:
            opened = [files.enter_context(out.source.open("rb")) for out in outgoing]
            stream = _Concatenation(outgoing, opened)
            script = shell.receive([out.incoming for out in outgoing])
            output = ssh.run(script, stdin=stream)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        # paramiko raises a bare EOFError when the socket is gone, sometimes before its own
        # thread has noticed and marked the connection inactive.
        if isinstance(exc, EOFError) or not ssh.is_active:
            raise StageFailed(
                lost + (f": {exc}" if str(exc) else ""), connection_lost=True
            ) from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StageFailed(f"upload of {names} failed: {reason}") from exc
    if output.exit_status in (0, shell.MISMATCH_EXIT):
        return output.exit_status
    if not ssh.is_active:  # the channel closed with the connection: no exit status came
        raise StageFailed(lost, connection_lost=True)
    # The first complaint names the cause; later ones (tar's "Exiting with failure") don't.
    complaint = output.stderr.strip().splitlines()[:1] or [f"exit {output.exit_status}"]
    cause = complaint[0].removeprefix(shell.OWN_COMPLAINT)
    raise StageFailed(f"upload of {names} failed: {cause}" + _failure_note(ssh, outgoing))


def upload_files(
    task: Task,
    files: Sequence[FileToSend],
    remote_state: RemoteState | None = None,
    transfer: TransferMode | None = None,
) -> Result:
    """Upload files into staging dirs, skipping those the node already has with the same
    content and mode.

    Args:
        remote_state: what a probe already learned of the node (facts.probe_node); asked
            here otherwise.
        transfer: "stream" (every file in one command, packed files unpacked once whole),
            "sftp" (file by file, resumable), or "auto": the stream where the node's `head -c`
            cuts a pipe exactly, else SFTP. Default: the run's choice (--transfer), else auto.
    Returns:
        Result with `result` the list of remote paths written; changed when any.
    """
    if not files:
        return Result(host=task.host, result=[], changed=False)
    ssh = node_ssh(task)
    log = node_logger(task.host.name)
    versions = file_versions(files)
    if remote_state is None:
        parts = part_paths(files, versions)
        script = shell.remote_state([version.remote for version in versions], parts)
        answer = ssh.run(script, as_root=False).stdout.splitlines()
        remote_state = parse_remote_state(versions, answer, parts)
    pending = []
    for item, version in zip(files, versions, strict=True):
        if version in remote_state.unchanged:
            log.info("unchanged: %s", item.remote)
        else:
            pending.append((item, version.sha256))
    path = transfer_path(transfer or run_options(task.nornir.config).get("transfer"), remote_state)
    if path == "sftp":
        for item, sha256 in pending:
            send = dataclasses.replace(item, sha256=sha256)
            has_zstd = remote_state.has_zstd
            send_file(ssh, send, log, as_root=True, make_dirs=False, staged=True, has_zstd=has_zstd)
    elif len(pending) > 1 and not remote_state.exact_head:
        # Every file but the last would take bytes of the next one: never install those.
        raise StageFailed(
            "the node's `head -c` reads past what it is asked for (BusyBox?), so one stream "
            "cannot carry several files to it: use --transfer auto or sftp"
        )
    else:
        _stream(ssh, log, pending, remote_state)
    changed = [item.remote for item, _ in pending]
    return Result(host=task.host, result=changed, changed=bool(changed))


def transfer_path(choice: TransferMode | None, remote_state: RemoteState) -> TransferMode:
    """The path files take to this node: the choice, or for auto (the default) the stream
    unless the node's `head -c` over-reads a pipe (BusyBox), which would mix files up."""
    if choice in ("stream", "sftp"):
        return choice
    return "stream" if remote_state.exact_head else "sftp"


def _stream(
    ssh: KenornirSSH,
    log: logging.Logger,
    pending: Sequence[tuple[FileToSend, str]],
    remote_state: RemoteState,
) -> None:
    for first in range(0, len(pending), _FILES_PER_COMMAND):
        batch = pending[first : first + _FILES_PER_COMMAND]
        outgoing = _outgoing(batch, remote_state, fresh=False)
        for out in outgoing:
            if out.offset:
                sent_size = out.incoming.sent_size
                log.info("resumed at %d of %d bytes: %s", out.offset, sent_size, out.item.remote)
        if _send(ssh, outgoing) == shell.MISMATCH_EXIT:
            # What a cut upload left did not fit what followed it: send it all again, once.
            log.warning("what arrived does not match its sha256; sending it again")
            outgoing = _outgoing(batch, remote_state, fresh=True)
            if _send(ssh, outgoing) == shell.MISMATCH_EXIT:
                raise StageFailed(f"upload of {outgoing[0].item.remote} arrived damaged twice")
        for out in outgoing:
            how = f", packed: {out.source.name} unpacked on the node" if out.item.packed else ""
            log.info("uploaded: %s (%d bytes sent%s)", out.item.remote, out.size, how)


def upload(task: Task, local: Path, remote: str, mode: int = KEADM_MODE) -> Result:
    """Upload one file (see upload_files)."""
    return upload_files(task, [FileToSend(local, remote, mode)])


def dir_files(local_dir: Path, remote_dir: str = STAGING_DIR) -> list[FileToSend]:
    """copyFrom semantics: every file in local_dir, flat into remote_dir, mode 0755."""
    return [
        FileToSend(path, posixpath.join(remote_dir, path.name))
        for path in sorted(local_dir.iterdir())
        if path.is_file()
    ]


def upload_dir(task: Task, local_dir: Path, remote_dir: str = STAGING_DIR) -> Result:
    """Upload every file of local_dir (copyFrom) flat into remote_dir."""
    return upload_files(task, dir_files(local_dir, remote_dir))
