"""SFTP transfer tasks: uploads that resume, land atomically and are checked on the node.

The exec stream (transfer.upload_files) is join_node's fastest path; SFTP is what a composer
reaches for to put one file somewhere (a CA certificate into /etc/kubeedge/ca/), and join_node's
path on nodes whose userland cannot cut a stream exactly (BusyBox's `head -c` over-reads).

An upload lands in a part file first, so the final path is never partial, and a part left by a
cut connection is continued on the next try from the bytes it holds: the sha256 computed on the
node from what finally arrived decides whether it is kept (one fresh send when it is not). Only
then is the file moved into place with its mode (shell.adopt). On sudo nodes `as_root` uploads
into the login user's private part dir over SFTP, and root copies it into place: SFTP itself
runs as the login user and cannot write where only root may.
"""

from __future__ import annotations

import logging
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.connection import KenornirSSH, node_ssh
from kenornir.nodelog import node_logger
from kenornir.notes import PART_SUFFIX, part_path
from kenornir.outcome import StageFailed
from kenornir.tasks.files import FileToSend, local_sha256

# What one SFTP write carries: paramiko splits larger writes into 32 KiB requests and pipelines
# them; reading the local file in bigger pieces keeps Python's share small.
_READ_BYTES = 1024 * 1024
# The login user's own dir for parts that root installs elsewhere (relative: the SFTP home).
USER_PARTS_DIR = ".kenornir-parts"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Sent:
    """What one upload did: bytes sent now, and where a cut upload was resumed (0: fresh)."""

    remote: str
    sha256: str
    size: int
    sent_bytes: int
    resumed_at: int
    changed: bool


def sftp_upload(  # noqa: PLR0917 (the issue's signature: a Nornir task's arguments)
    task: Task,
    local: str | Path,
    remote: str,
    mode: int = 0o644,
    make_dirs: bool = True,
    as_root: bool = False,
    *,
    on_progress: Progress | None = None,
) -> Result:
    """Upload one file over SFTP: skipped when the node holds it already, else resumed or sent,
    checked on the node (sha256) and moved into place atomically.

    Args:
        remote: absolute path on the node.
        as_root: on sudo nodes, write where only root may (e.g. /etc/kubeedge/ca/).
        on_progress: called with (bytes of the file on the node so far, file size).
    Returns:
        Result whose `result` is a Sent; changed unless the node held the file already.
    Raises:
        StageFailed: the upload failed; the reason says where and why.
    """
    item = FileToSend(Path(local), remote, mode)
    log = node_logger(task.host.name)
    done = send_file(
        node_ssh(task), item, log, as_root=as_root, make_dirs=make_dirs, on_progress=on_progress
    )
    return Result(host=task.host, result=done, changed=done.changed)


def send_file(
    ssh: KenornirSSH,
    item: FileToSend,
    log: logging.Logger,
    *,
    as_root: bool,
    make_dirs: bool,
    staged: bool = False,
    has_zstd: bool = False,
    on_progress: Progress | None = None,
) -> Sent:
    """sftp_upload's work, and join_node's SFTP path.

    Args:
        staged: a file of kenornir's staging dir (join_node): its dir is checked as the stream
            path checks it, a note records it for the next run's probe, and the probe has
            already said the node does not hold it. A packed file (keadm) is sent packed, as on
            the stream (the zstd frame where the node has zstd: has_zstd) and unpacked on the
            node from its part: a third of the bytes, and a third to resume.
    """
    try:
        sha256 = item.sha256 or local_sha256(item.local)
    except OSError as exc:
        raise StageFailed(f"cannot read {item.local}: {_os_reason(exc)}") from None
    source = item.packed.sent_for(has_zstd) if staged and item.packed else item.local
    packed = item.packed if item.packed and source != item.local else None
    unpack = packed.unpacker(source) if packed else ()
    sent_sha256 = local_sha256(source) if packed else sha256
    size = source.stat().st_size
    via_root = as_root and ssh.sudo
    remote = item.remote
    try:
        if not staged and _node_holds(ssh, item, sha256, via_root):
            log.info("unchanged: %s", remote)
            return Sent(remote, sha256, size, 0, 0, changed=False)
        sftp = ssh.sftp()
        if make_dirs and not via_root:
            _make_dirs(sftp, posixpath.dirname(remote))
        if via_root:
            part = _user_part(sftp, sent_sha256)
        else:  # the stream's part too: a cut upload resumes by either path
            part = part_path(remote, sha256, packed.form(source) if packed else "")
        for fresh in (False, True):
            resumed_at = _write_part(sftp, source, part, size, fresh=fresh, on_progress=on_progress)
            if resumed_at:
                log.info("resumed at %d of %d bytes: %s", resumed_at, size, remote)
            script = shell.adopt(
                part,
                remote,
                item.mode,
                sha256,
                staged=staged,
                make_dirs=make_dirs and via_root,
                unpack=unpack,
            )
            output = ssh.run(script, as_root=via_root)
            if output.exit_status == 0:
                how = f", packed: {source.name} unpacked on the node" if unpack else ""
                log.info("uploaded over SFTP: %s (%d bytes sent%s)", remote, size - resumed_at, how)
                return Sent(remote, sha256, size, size - resumed_at, resumed_at, changed=True)
            if output.exit_status != shell.MISMATCH_EXIT or fresh:
                raise StageFailed(f"upload of {remote} failed: {_complaint(output.stderr)}")
            log.warning("%s: what arrived does not match its sha256; sending it again", remote)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        if isinstance(exc, EOFError) or not ssh.is_active:
            raise StageFailed(
                f"SSH connection lost while uploading {remote}", connection_lost=True
            ) from exc
        raise StageFailed(f"upload of {remote} failed: {_os_reason(exc)}") from exc
    raise AssertionError("unreachable: the fresh send returns or raises")


def _node_holds(ssh: KenornirSSH, item: FileToSend, sha256: str, via_root: bool) -> bool:
    """Whether the file is in place with this content and mode (hashed on the node only when
    its size and mode match)."""
    size = item.local.stat().st_size
    output = ssh.run(shell.holds(item.remote, size, item.mode, sha256), as_root=via_root)
    return output.exit_status == 0 and output.stdout.strip() == "same"


def _make_dirs(sftp: paramiko.SFTPClient, directory: str) -> None:
    """mkdir -p over SFTP, as the login user."""
    missing: list[str] = []
    while directory not in ("", "/"):
        try:
            if stat.S_ISDIR(sftp.stat(directory).st_mode or 0):
                break
            raise OSError(f"{directory} is not a directory")
        except FileNotFoundError:
            missing.append(directory)
            directory = posixpath.dirname(directory)
    for path in reversed(missing):
        sftp.mkdir(path, 0o755)


def _user_part(sftp: paramiko.SFTPClient, sha256: str) -> str:
    """The login user's part file for content sha256, in a dir only they may enter: named by
    content, so a cut upload resumes wherever it is headed."""
    home = sftp.normalize(".")
    directory = posixpath.join(home, USER_PARTS_DIR)
    try:
        info = sftp.lstat(directory)
        if not stat.S_ISDIR(info.st_mode or 0):
            raise OSError(f"{directory} is not a directory; remove it")
    except FileNotFoundError:
        sftp.mkdir(directory, 0o700)
    sftp.chmod(directory, 0o700)
    return posixpath.join(directory, sha256 + PART_SUFFIX)


def _write_part(
    sftp: paramiko.SFTPClient,
    local: Path,
    part: str,
    size: int,
    *,
    fresh: bool,
    on_progress: Progress | None,
) -> int:
    """Write local into part from the bytes part already holds (all of them unless fresh);
    returns where it resumed."""
    offset = 0
    if not fresh:
        try:
            info = sftp.lstat(part)
            if stat.S_ISREG(info.st_mode or 0) and (info.st_size or 0) <= size:
                offset = info.st_size or 0
        except FileNotFoundError:
            pass
    with local.open("rb") as source, sftp.open(part, "r+" if offset else "w") as target:
        target.set_pipelined(True)
        source.seek(offset)
        target.seek(offset)
        written = offset
        while chunk := source.read(_READ_BYTES):
            target.write(chunk)
            written += len(chunk)
            if on_progress is not None:
                on_progress(written, size)
    return offset


def sftp_download(task: Task, remote: str, local: str | Path) -> Result:
    """Fetch a file from the node (a log, a config) to local, written atomically.

    Returns:
        Result whose `result` is the local path; `sha256` of what arrived in its `stdout`.
    Raises:
        StageFailed: the file cannot be read; the reason says why.
    """
    target = Path(local)
    partial = target.with_name(target.name + PART_SUFFIX)
    try:
        node_ssh(task).sftp().get(remote, str(partial))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        partial.unlink(missing_ok=True)
        raise StageFailed(f"download of {remote} failed: {_os_reason(exc)}") from exc
    partial.replace(target)
    return Result(host=task.host, result=target, stdout=local_sha256(target), changed=False)


def _complaint(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[0].removeprefix(shell.OWN_COMPLAINT) if lines else "no reason given"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
