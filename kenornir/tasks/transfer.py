"""Files onto the node: the staging dir, uploads that skip unchanged files, and copyFrom."""

from __future__ import annotations

import contextlib
import errno
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


# What identifies a file's inode and content version: any write, chmod or replacement changes
# the ctime, which no user can set back.
_STAT_FORMAT = "%i %s %.9Y %.9Z %a"


@dataclass(frozen=True)
class PackedFile:
    """Compressed forms of the file, sent instead of it and unpacked on the node as they arrive.

    keadm compresses about 3.3:1, so either sends a third of the bytes or less. A node with
    zstd gets the zstd frame, which it unpacks about 5x faster than gzip; any other node gets
    the verified release tar.gz.
    """

    tarball: Path
    member: str  # the file's member name exactly as stored in the tarball
    zstd_frame: Path | None = None

    def sent_for(self, node_has_zstd: bool) -> Path:
        """Which form goes to a node."""
        return self.zstd_frame if node_has_zstd and self.zstd_frame else self.tarball


@dataclass(frozen=True)
class FileToSend:
    local: Path
    remote: str
    mode: int = 0o755
    sha256: str | None = None  # known digest (a verified package) saves hashing it again
    packed: PackedFile | None = None

    @property
    def part(self) -> str:
        """Where the upload lands first: the final path is never partial."""
        return self.remote + _PART_SUFFIX

    @property
    def record(self) -> str:
        """The node-side note `<sha256> <stat>` written after the upload (see _remote_state)."""
        return posixpath.join(
            posixpath.dirname(self.remote), f".{posixpath.basename(self.remote)}.kenornir"
        )


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


@dataclass(frozen=True)
class _RemoteState:
    unchanged: list[bool]  # per file: the node already has it, same content and mode
    has_zstd: bool


def _remote_state(
    ssh: KenornirSSH, files: Sequence[FileToSend], wanted: Sequence[str]
) -> _RemoteState:
    """Which files the node already has, and whether it has zstd, in one round trip.

    Files are not hashed there: after each upload the node keeps a note of the file's sha256
    and its stat (inode, size, mtime, ctime, mode). A file whose stat still matches its note
    holds that content: changing it in any way changes its ctime. keadm itself is hashed again
    right before it runs.
    """
    # zstd must run, not just be on the PATH: a broken one falls back to the tarball.
    script = "zstd -V >/dev/null 2>&1 && echo zstd || echo none; " + "".join(
        f"printf '%s|%s\\n' \"$(cat -- {shlex.quote(f.record)} 2>/dev/null)\" "
        f"\"$(stat -c '{_STAT_FORMAT}' -- {shlex.quote(f.remote)} 2>/dev/null)\"; "
        for f in files
    )
    decoder, *lines = ssh.run(script, as_root=False).stdout.splitlines()
    states = []
    for item, digest, line in zip(files, wanted, lines, strict=True):
        recorded, _, current = line.partition("|")
        states.append(
            bool(current)
            and recorded == f"{digest} {current}"
            and current.endswith(f" {item.mode:o}")
        )
    return _RemoteState(states, decoder == "zstd")


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


def _send(ssh: KenornirSSH, item: FileToSend, node_has_zstd: bool) -> None:
    """Upload the file to its part name; _finish puts it in place.

    A packed file is streamed into `zstd` or `tar` on the node, which unpacks while the bytes
    arrive: a third of the bytes on the wire, and the unpacking overlaps the transfer.
    """
    try:
        if item.packed is None:
            with item.local.open("rb") as data:
                ssh.sftp.putfo(
                    data, item.part, callback=_interruptible(ssh, item.remote), confirm=True
                )
        else:
            _stream_unpacked(ssh, item, item.packed, node_has_zstd)
    except BaseException as exc:
        if not ssh.is_active:
            # The part file stays behind; the next run's upload overwrites it.
            detail = f": {exc}" if str(exc) else ""
            raise StageFailed(
                f"SSH connection lost while uploading {item.local.name} to {item.remote}{detail}"
            ) from exc
        # The part file may never have been created; the error below is what matters.
        with contextlib.suppress(OSError, paramiko.SSHException):
            ssh.sftp.remove(item.part)
        if isinstance(exc, OSError | paramiko.SSHException):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StageFailed(
                f"upload of {item.local.name} to {item.remote} failed: {reason}"
                + _space_note(ssh, item)
            ) from exc
        raise


def _stream_unpacked(
    ssh: KenornirSSH, item: FileToSend, packed: PackedFile, node_has_zstd: bool
) -> None:
    sent, part = packed.sent_for(node_has_zstd), shlex.quote(item.part)
    if sent == packed.zstd_frame:
        unpack = f"zstd -dcq > {part}"
    else:
        unpack = f"tar -xzOf - -- {shlex.quote(packed.member)} > {part}"
    with sent.open("rb") as data:
        output = ssh.run(unpack, as_root=False, stdin=data)
    if output.exit_status != 0:
        # The first complaint names the cause; later ones (tar's "Exiting with failure") don't.
        detail = output.stderr.strip().splitlines()[:1] or [f"exit {output.exit_status}"]
        raise OSError(errno.EIO, f"unpacking on the node: {detail[0]}")


def _finish(ssh: KenornirSSH, sent: Sequence[FileToSend], digests: Sequence[str]) -> None:
    """Put every uploaded file in place in one round trip: set modes, rename over the final
    paths, and note what each now holds. Part files never outlive it."""
    steps = []
    for item, digest in zip(sent, digests, strict=True):
        part, final = shlex.quote(item.part), shlex.quote(item.remote)
        steps.append(f"chmod {item.mode:o} {part}; mv -f -- {part} {final}")
        stat_line = f"$(stat -c '{_STAT_FORMAT}' -- {final})"
        steps.append(f'printf "%s %s\\n" {digest} "{stat_line}" > {shlex.quote(item.record)}')
    leftovers = " ".join(shlex.quote(item.part) for item in sent)
    script = f"trap 'rm -f -- {leftovers}' EXIT; set -e; " + "; ".join(steps)
    output = ssh.run(script, as_root=False)
    if output.exit_status != 0:
        detail = output.stderr.strip().splitlines()[:1] or [f"exit {output.exit_status}"]
        raise StageFailed(
            f"writing {', '.join(i.remote for i in sent)} on the node failed: {detail[0]}"
        )


def upload_files(task: Task, files: Sequence[FileToSend]) -> Result:
    """Upload files, skipping those the node already has with the same content and mode.

    Returns:
        Result with `result` the list of remote paths written; changed when any.
    """
    if not files:
        return Result(host=task.host, result=[], changed=False)
    ssh = node_ssh(task)
    log = node_logger(task.host.name)
    digests = [item.sha256 or local_sha256(item.local) for item in files]
    to_send = []
    remote = _remote_state(ssh, files, digests)
    for item, digest, unchanged in zip(files, digests, remote.unchanged, strict=True):
        if unchanged:
            log.info("unchanged: %s", item.remote)
            continue
        _send(ssh, item, remote.has_zstd)
        sent = item.packed.sent_for(remote.has_zstd) if item.packed else item.local
        how = f", packed: {sent.name} unpacked on the node" if item.packed else ""
        log.info("uploaded: %s (%d bytes sent%s)", item.remote, sent.stat().st_size, how)
        to_send.append((item, digest))
    if to_send:
        _finish(ssh, [item for item, _ in to_send], [digest for _, digest in to_send])
    changed = [item.remote for item, _ in to_send]
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
