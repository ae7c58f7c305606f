"""Files onto the node: the staging dir, uploads that skip unchanged files, and copyFrom."""

from __future__ import annotations

import contextlib
import functools
import posixpath
import shlex
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from nornir.core.task import Result, Task

from kenornir.checksum import file_digest
from kenornir.config import STAGING_DIR
from kenornir.connection import CommandInterrupted, KenornirSSH, node_ssh
from kenornir.nodelog import node_logger
from kenornir.outcome import StageFailed

_PART_SUFFIX = ".kenornir-part"


@dataclass(frozen=True)
class FileToSend:
    local: Path
    remote: str
    mode: int = 0o755
    sha256: str | None = None  # known digest (a verified package) saves hashing it again


@functools.cache
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so an edited file is hashed again.
    return file_digest(path, "sha256")


def local_sha256(path: Path) -> str:
    """sha256 of a local file, computed once per run for every node that receives it."""
    info = path.stat()
    return _cached_sha256(path.resolve(), info.st_size, info.st_mtime_ns)


def stage_dir(task: Task, path: str = STAGING_DIR) -> Result:
    """Create the staging dir, refusing one that another user could tamper with.

    /tmp is shared on the node: a dir (or any parent under /tmp) that is a symlink, owned by
    someone else or writable by others would let another user swap keadm before it runs.
    The dirs are checked before mkdir too, so nothing is ever created through a planted link.
    """
    ssh = node_ssh(task)
    parts = path.strip("/").split("/")
    # Each dir below the top one (/tmp itself is root's, sticky and world-writable by design).
    chain = ["/" + "/".join(parts[:n]) for n in range(2, len(parts) + 1)]
    quoted = " ".join(shlex.quote(p) for p in chain)
    # Those that exist: the login uid first, then `uid mode name` per dir (missing ones skipped).
    inspect = f"id -u; stat -c '%u %f %n' -- {quoted} 2>/dev/null; true"
    _refuse_unsafe(ssh.run(inspect, as_root=False).stdout.splitlines())
    script = (
        f"existed=1; [ -d {shlex.quote(path)} ] || existed=0; "
        f"mkdir -p -m 0755 -- {shlex.quote(path)} || exit 1; echo $existed; {inspect}"
    )
    output = ssh.run(script, as_root=False)
    if output.exit_status != 0:
        raise StageFailed(f"cannot create {path}: {output.stderr.strip() or 'mkdir failed'}")
    existed, *inspected = output.stdout.splitlines()
    _refuse_unsafe(inspected)
    return Result(host=task.host, result=path, changed=existed.strip() == "0")


def _refuse_unsafe(inspected: Sequence[str]) -> None:
    """StageFailed for the first dir (`uid mode name` lines after the login uid) not safe to use."""
    uid, *entries = inspected
    for entry in entries:
        owner, mode_hex, name = entry.split(" ", 2)
        mode = int(mode_hex, 16)
        if stat.S_ISLNK(mode):
            raise StageFailed(f"{name} is a symlink; refusing to stage files through it")
        if not stat.S_ISDIR(mode):
            raise StageFailed(f"{name} is not a directory; remove it")
        if owner != uid.strip():
            raise StageFailed(f"{name} is owned by uid {owner}, not the login user; remove it")
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StageFailed(f"{name} is writable by group or others; remove it")


def _remote_state(ssh: KenornirSSH, remotes: Sequence[str]) -> dict[str, tuple[str, int]]:
    """(sha256, mode) of those remote files that exist, in one round trip."""
    names = " ".join(shlex.quote(r) for r in remotes)
    output = ssh.run(
        f"sha256sum -- {names} 2>/dev/null; echo ---; stat -c '%a %n' -- {names} 2>/dev/null; true",
        as_root=False,
    )
    digests_part, _, modes_part = output.stdout.partition("---\n")
    digests = {}
    for line in digests_part.splitlines():
        digest, _, name = line.partition("  ")
        digests[name] = digest
    state = {}
    for line in modes_part.splitlines():
        mode, _, name = line.partition(" ")
        if name in digests:
            state[name] = (digests[name], int(mode, 8))
    return state


def _interruptible(ssh: KenornirSSH, name: str) -> Callable[[int, int], None]:
    def progress(sent: int, total: int) -> None:
        if ssh.stop_event is not None and ssh.stop_event.is_set():
            raise CommandInterrupted(f"interrupted while uploading {name}")

    return progress


def _space_note(ssh: KenornirSSH, item: FileToSend) -> str:
    """Why a failed upload may have failed as far as disk space goes ("" when unknown)."""
    directory = posixpath.dirname(item.remote)
    try:
        output = ssh.run(f"df -Pk -- {shlex.quote(directory)} | tail -n 1", as_root=False)
    except (OSError, paramiko.SSHException):
        return ""
    fields = output.stdout.split()
    if len(fields) < 6 or not fields[3].isdigit():
        return ""
    free_kib, mount = int(fields[3]), fields[5]
    needed_kib = -(-item.local.stat().st_size // 1024)
    if needed_kib > free_kib:
        return f"; no space left: needs {needed_kib} KiB, {free_kib} KiB free on {mount}"
    return f" ({free_kib} KiB free on {mount})"


def _send(ssh: KenornirSSH, item: FileToSend) -> None:
    """Upload to a temporary name, set the mode, then rename: the final path is never partial."""
    part = item.remote + _PART_SUFFIX
    try:
        with item.local.open("rb") as data:
            ssh.sftp.putfo(data, part, callback=_interruptible(ssh, item.remote), confirm=True)
        ssh.sftp.chmod(part, item.mode)
        ssh.sftp.posix_rename(part, item.remote)
    except BaseException as exc:
        if not ssh.is_active:
            # The part file stays behind; the next run's upload overwrites it.
            detail = f": {exc}" if str(exc) else ""
            raise StageFailed(
                f"SSH connection lost while uploading {item.local.name} to {item.remote}{detail}"
            ) from exc
        # The part file may never have been created; the error below is what matters.
        with contextlib.suppress(OSError, paramiko.SSHException):
            ssh.sftp.remove(part)
        if isinstance(exc, OSError | paramiko.SSHException):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StageFailed(
                f"upload of {item.local.name} to {item.remote} failed: {reason}"
                + _space_note(ssh, item)
            ) from exc
        raise


def upload_files(task: Task, files: Sequence[FileToSend]) -> Result:
    """Upload files, skipping those whose remote sha256 and mode already match.

    Returns:
        Result with `result` the list of remote paths written or re-moded; changed when any.
    """
    if not files:
        return Result(host=task.host, result=[], changed=False)
    ssh = node_ssh(task)
    log = node_logger(task.host.name)
    remote_state = _remote_state(ssh, [f.remote for f in files])
    changed = []
    for item in files:
        wanted = item.sha256 or local_sha256(item.local)
        digest, mode = remote_state.get(item.remote, ("", 0))
        if digest == wanted and mode == item.mode:
            log.info("unchanged: %s", item.remote)
            continue
        if digest == wanted:
            ssh.sftp.chmod(item.remote, item.mode)
            log.info("mode set: %s %o", item.remote, item.mode)
        else:
            _send(ssh, item)
            log.info("uploaded: %s (%d bytes)", item.remote, item.local.stat().st_size)
        changed.append(item.remote)
    return Result(host=task.host, result=changed, changed=bool(changed))


def upload(task: Task, local: Path, remote: str, mode: int = 0o755) -> Result:
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
