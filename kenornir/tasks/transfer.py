"""Files onto the node: the staging dir, uploads that skip unchanged files, and copyFrom."""

from __future__ import annotations

import contextlib
import errno
import functools
import posixpath
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from nornir.core.task import Result, Task

from kenornir.checksum import file_digest
from kenornir.config import STAGING_DIR
from kenornir.connection import KenornirSSH, node_ssh
from kenornir.nodelog import node_logger
from kenornir.outcome import StageFailed

_PART_SUFFIX = ".kenornir-part"
KEADM_MODE = 0o755  # and of every copyFrom file, as upstream uploads them

# What identifies a file's inode and content version: any write, chmod or replacement changes
# the ctime, which no user can set back.
_IDENTITY_FORMAT = "%i %s %.9Y %.9Z"


@dataclass(frozen=True)
class PackedFile:
    """Compressed forms of the file, sent instead of it and unpacked on the node as they arrive.

    keadm compresses about 3.3:1, so either sends a third of the bytes or less. A node with
    zstd gets the zstd frame, which it unpacks about 5x faster than gzip; any other node gets
    the verified release tar.gz. Both carry a checksum of what they unpack to (zstd's content
    checksum, gzip's CRC), so a stream damaged on the way fails on the node.
    """

    tarball: Path
    member: str  # the file's member name exactly as stored in the tarball
    zstd_frame: Path | None = None

    def sent_for(self, node_has_zstd: bool) -> Path:
        """Which form goes to a node."""
        return self.zstd_frame if node_has_zstd and self.zstd_frame else self.tarball

    def unpacker(self, sent: Path) -> str:
        """The node's filter from the sent form to the file."""
        if sent == self.zstd_frame:
            return "zstd -dcq"
        return f"tar -xzOf - -- {shlex.quote(self.member)}"


@dataclass(frozen=True)
class FileToSend:
    local: Path
    remote: str
    mode: int = KEADM_MODE
    sha256: str | None = None  # known digest (a verified package) saves hashing it again
    packed: PackedFile | None = None

    @property
    def part(self) -> str:
        """Where the upload lands first: the final path is never partial."""
        return self.remote + _PART_SUFFIX


def note_path(remote: str) -> str:
    """Where kenornir notes what it wrote to `remote`: `<sha256> <identity> <mode>`."""
    return posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.kenornir")


def note_line(sha256: str, identity: str, mode: int) -> str:
    """What a note says of its file: the content's sha256, the file's identity (stat's
    _IDENTITY_FORMAT) and mode.

    While a file's note still matches it, the file holds that content: writing to the file,
    chmod or replacing it changes its identity (the ctime at least, which no user can set back).
    So nothing needs hashing to know it.
    """
    return f"{sha256} {identity} {mode:o}"


def _shell_identity(quoted_path: str) -> str:
    return f"$(stat -c '{_IDENTITY_FORMAT}' -- {quoted_path} 2>/dev/null)"


def same_file_test(remote: str, sha256: str, mode: int) -> str:
    """A shell test that holds while `remote` is the very file kenornir wrote, with that sha256
    and mode (see note_line)."""
    path, note = shlex.quote(remote), shlex.quote(note_path(remote))
    expected = note_line(sha256, _shell_identity(path), mode)
    return f'[ "$(cat -- {note} 2>/dev/null)" = "{expected}" ]'


@functools.cache
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so an edited file is hashed again.
    return file_digest(path, "sha256")


def local_sha256(path: Path) -> str:
    """sha256 of a local file, computed once per run for every node that receives it."""
    info = path.stat()
    return _cached_sha256(path.resolve(), info.st_size, info.st_mtime_ns)


def _staging_chain(path: str) -> list[str]:
    """Each dir of path below the top one (/tmp itself is root's, sticky and world-writable)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:n]) for n in range(2, len(parts) + 1)]


def staging_inspection(path: str = STAGING_DIR) -> str:
    """The shell command stage_dir judges the staging dirs by: the login uid, then
    `uid mode name` for each dir of the chain that exists."""
    quoted = " ".join(shlex.quote(p) for p in _staging_chain(path))
    return f"id -u; stat -c '%u %f %n' -- {quoted} 2>/dev/null; true"


def stage_dir(
    task: Task, path: str = STAGING_DIR, inspected: Sequence[str] | None = None
) -> Result:
    """Create the staging dir, refusing one that another user could tamper with.

    /tmp is shared on the node: a dir (or any parent under /tmp) that is a symlink, owned by
    someone else or writable by others would let another user swap keadm before it runs.
    The dirs are checked before mkdir too, so nothing is ever created through a planted link;
    when they all exist already, that check is the only command.

    Args:
        inspected: the output lines of staging_inspection(path), when a probe already ran it.
    """
    ssh = node_ssh(task)
    if inspected is None:
        inspected = ssh.run(staging_inspection(path), as_root=False).stdout.splitlines()
    _refuse_unsafe(inspected)
    if len(inspected) == 1 + len(_staging_chain(path)):  # every dir is there already, and safe
        return Result(host=task.host, result=path, changed=False)
    script = f"mkdir -p -m 0755 -- {shlex.quote(path)} || exit 1; {staging_inspection(path)}"
    output = ssh.run(script, as_root=False)
    if output.exit_status != 0:
        raise StageFailed(f"cannot create {path}: {output.stderr.strip() or 'mkdir failed'}")
    _refuse_unsafe(output.stdout.splitlines())
    return Result(host=task.host, result=path, changed=True)


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
class FileVersion:
    """A file as the node should hold it: where, with which content and mode."""

    remote: str
    sha256: str
    mode: int


@dataclass(frozen=True)
class RemoteState:
    """What the node already holds (see note_line), and whether it has a working zstd."""

    unchanged: frozenset[FileVersion]
    has_zstd: bool


# Ends the notes in remote_state_script's output; the files' identities follow.
_NOTES_END = "__kenornir_notes_end__"


def remote_state_script(versions: Sequence[FileVersion]) -> str:
    """The shell command whose output parse_remote_state reads: whether zstd works, then every
    note (`NOTE:line`), then every file's identity (`PATH|identity`). Three processes however
    many files; a probe may ask about several versions of one path (keadm for each arch)."""
    paths = list(dict.fromkeys(v.remote for v in versions))
    notes = " ".join(shlex.quote(note_path(path)) for path in paths)
    files = " ".join(shlex.quote(path) for path in paths)
    listing = (
        [
            f"grep -H '' -- {notes} 2>/dev/null",
            f"echo {_NOTES_END}",
            f"stat -c '%n|{_IDENTITY_FORMAT}' -- {files} 2>/dev/null",
        ]
        if paths
        else [f"echo {_NOTES_END}"]
    )
    # zstd must run, not just be on the PATH: a broken one falls back to the tarball.
    return "; ".join(["zstd -V >/dev/null 2>&1 && echo zstd || echo none", *listing, "true"])


def parse_remote_state(versions: Sequence[FileVersion], lines: Sequence[str]) -> RemoteState:
    decoder, *rest = lines
    end = rest.index(_NOTES_END)
    notes: dict[str, str] = {}
    for line in rest[:end]:
        for version in versions:
            prefix = note_path(version.remote) + ":"
            if line.startswith(prefix):
                notes.setdefault(version.remote, line[len(prefix) :])
    identities = dict(line.rpartition("|")[::2] for line in rest[end + 1 :])
    unchanged = {
        v
        for v in versions
        if v.remote in identities
        and notes.get(v.remote) == note_line(v.sha256, identities[v.remote], v.mode)
    }
    return RemoteState(frozenset(unchanged), decoder == "zstd")


def file_versions(files: Sequence[FileToSend]) -> list[FileVersion]:
    return [FileVersion(f.remote, f.sha256 or local_sha256(f.local), f.mode) for f in files]


@dataclass(frozen=True)
class _Outgoing:
    """One file on its way: what is read locally and how many bytes of it go."""

    item: FileToSend
    sha256: str
    source: Path  # the file itself, or the packed form chosen for this node
    size: int


class _Concatenation:
    """Reads the outgoing files one after the other, each exactly its announced size."""

    def __init__(self, outgoing: Sequence[_Outgoing], opened: Sequence[BinaryIO]) -> None:
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


def _receive_script(outgoing: Sequence[_Outgoing]) -> str:
    """What the node runs to take every file off its stdin and put it in place.

    Each file arrives as exactly its size in bytes (`head -c` reads no further) but the last,
    which takes the rest of the stream directly: it is the big one (see _sending_order), and
    `head` would copy it through a pipe in 8 KiB reads. Each is unpacked when packed and
    checked for its full size; only then are modes set, files renamed over their final paths
    and notes written. Part files never outlive the script.
    """
    parts = " ".join(shlex.quote(out.item.part) for out in outgoing)
    steps = [f"trap 'rm -f -- {parts}' EXIT", "set -e"]
    for out in outgoing:
        part, expected = shlex.quote(out.item.part), out.item.local.stat().st_size
        take = None if out is outgoing[-1] else f"head -c {out.size}"
        unpack = out.item.packed.unpacker(out.source) if out.item.packed else None
        pipeline = " | ".join(filter(None, [take, unpack])) or "cat"
        steps.append(f"{pipeline} > {part}")
        received = f"$(stat -c %s -- {part})"
        steps.append(
            f'[ "{received}" = {expected} ] || '
            f'{{ echo "{out.item.remote}: {received} of {expected} bytes arrived" >&2; exit 1; }}'
        )
    for out in outgoing:
        part, final = shlex.quote(out.item.part), shlex.quote(out.item.remote)
        note = note_line(out.sha256, _shell_identity(final), out.item.mode)
        steps.append(f"chmod {out.item.mode:o} {part}")
        steps.append(f"mv -f -- {part} {final}")
        steps.append(f'printf "%s\\n" "{note}" > {shlex.quote(note_path(out.item.remote))}')
    return "; ".join(steps)


def _sending_order(outgoing: Sequence[_Outgoing]) -> list[_Outgoing]:
    """Packed files last, the biggest last of all: the last one is read to the end of the stream."""
    return sorted(outgoing, key=lambda out: (out.item.packed is not None, out.size))


def _space_note(ssh: KenornirSSH, outgoing: Sequence[_Outgoing]) -> str:
    """Why a failed upload may have failed as far as disk space goes ("" when unknown)."""
    directory = posixpath.dirname(outgoing[0].item.remote)
    try:
        output = ssh.run(f"df -Pk -- {shlex.quote(directory)} | tail -n 1", as_root=False)
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


def _send(ssh: KenornirSSH, outgoing: Sequence[_Outgoing]) -> None:
    """Send every file in one command on the node (_receive_script), fed one stream.

    One command instead of a few SFTP round trips per file, and packed files are unpacked as
    their bytes arrive.
    """
    names = ", ".join(out.item.remote for out in outgoing)
    # Part files may stay behind when the connection is lost; the next upload overwrites them.
    lost = f"SSH connection lost while uploading {names}"
    try:
        with contextlib.ExitStack() as files:
            opened = [files.enter_context(out.source.open("rb")) for out in outgoing]
            stream = _Concatenation(outgoing, opened)
            output = ssh.run(_receive_script(outgoing), as_root=False, stdin=stream)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        # paramiko raises a bare EOFError when the socket is gone, sometimes before its own
        # thread has noticed and marked the connection inactive.
        if isinstance(exc, EOFError) or not ssh.is_active:
            raise StageFailed(lost + (f": {exc}" if str(exc) else "")) from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StageFailed(f"upload of {names} failed: {reason}") from exc
    if output.exit_status != 0:
        if not ssh.is_active:  # the channel closed with the connection: no exit status came
            raise StageFailed(lost)
        # The first complaint names the cause; later ones (tar's "Exiting with failure") don't.
        complaint = output.stderr.strip().splitlines()[:1] or [f"exit {output.exit_status}"]
        raise StageFailed(f"upload of {names} failed: {complaint[0]}" + _space_note(ssh, outgoing))


def upload_files(
    task: Task, files: Sequence[FileToSend], remote_state: RemoteState | None = None
) -> Result:
    """Upload files, skipping those the node already has with the same content and mode.

    Args:
        remote_state: what a probe already learned of the node (facts.probe_node); asked
            here otherwise.
    Returns:
        Result with `result` the list of remote paths written; changed when any.
    """
    if not files:
        return Result(host=task.host, result=[], changed=False)
    ssh = node_ssh(task)
    log = node_logger(task.host.name)
    versions = file_versions(files)
    if remote_state is None:
        lines = ssh.run(remote_state_script(versions), as_root=False).stdout.splitlines()
        remote_state = parse_remote_state(versions, lines)
    outgoing = []
    for item, version in zip(files, versions, strict=True):
        if version in remote_state.unchanged:
            log.info("unchanged: %s", item.remote)
            continue
        source = item.packed.sent_for(remote_state.has_zstd) if item.packed else item.local
        outgoing.append(_Outgoing(item, version.sha256, source, source.stat().st_size))
    if outgoing:
        _send(ssh, _sending_order(outgoing))
    for out in outgoing:
        how = f", packed: {out.source.name} unpacked on the node" if out.item.packed else ""
        log.info("uploaded: %s (%d bytes sent%s)", out.item.remote, out.size, how)
    changed = [out.item.remote for out in outgoing]
    return Result(host=task.host, result=changed, changed=bool(changed))


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
