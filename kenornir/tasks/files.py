"""What is sent to nodes: files with their modes, digests and packed forms."""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kenornir import shell
from kenornir.checksum import file_digest
from kenornir.notes import FileVersion, part_path

KEADM_MODE = 0o755  # and of every copyFrom file, as upstream uploads them


@dataclass(frozen=True)
class PackedFile:
    """Compressed forms of the file, sent instead of it and unpacked on the node once whole.

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

    def unpacker(self, sent: Path) -> tuple[str, ...]:
        """The argv of the node's filter from the sent form to the file."""
        if sent == self.zstd_frame:
            return ("zstd", "-dcq")
        return ("tar", "-xzOf", "-", "--", self.member)

    def form(self, sent: Path) -> str:
        """The sent form's name in its part file's (notes.part_path)."""
        return "zst" if sent == self.zstd_frame else "tgz"

    @property
    def forms(self) -> list[str]:
        return ["tgz", *(["zst"] if self.zstd_frame else [])]


@dataclass(frozen=True)
class FileToSend:
    local: Path
    remote: str
    mode: int = KEADM_MODE
    sha256: str | None = None  # known digest (a verified package) saves hashing it again
    packed: PackedFile | None = None

    def __post_init__(self) -> None:
        # Refused here, before anything is sent (see shell.upload_name_problem).
        problem = shell.upload_name_problem(posixpath.basename(self.remote))
        if problem is not None:
            raise shell.UnsendableWord(f"cannot upload to {self.remote!r}: the name {problem}")
        shell.words(self.remote)


@functools.cache
def _cached_sha256(path: Path, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the key so an edited file is hashed again.
    return file_digest(path, "sha256")


def local_sha256(path: Path) -> str:
    """sha256 of a local file, computed once per run for every node that receives it."""
    info = path.stat()
    return _cached_sha256(path.resolve(), info.st_size, info.st_mtime_ns)


def file_versions(files: Sequence[FileToSend]) -> list[FileVersion]:
    return [FileVersion(f.remote, f.sha256 or local_sha256(f.local), f.mode) for f in files]


def part_paths(files: Sequence[FileToSend], versions: Sequence[FileVersion]) -> list[str]:
    """Every part file a cut upload of files may have left on a node (notes.part_path): each
    file's own, and each packed form's."""
    parts = []
    for item, version in zip(files, versions, strict=True):
        forms = ["", *(item.packed.forms if item.packed else [])]
        parts += [part_path(version.remote, version.sha256, form) for form in forms]
    return parts
