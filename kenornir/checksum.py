"""File digests and the sha512 checksum files that KubeEdge releases publish beside each tarball."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SHA512_HEX = re.compile(r"[0-9a-f]{128}")


class ChecksumFormatError(ValueError):
    """A checksum file does not hold a sha512 hex digest."""


def file_digest(path: Path, algorithm: str) -> str:
    """Return the hex digest of the file at `path` ("sha512", "sha256", ...)."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def parse_sha512_checksum(text: str) -> str:
    """Return the lower-case sha512 hex digest held in a checksum file's text.

    KubeEdge writes the bare digest; `sha512sum` writes `DIGEST  NAME` (or `DIGEST *NAME`).
    Both are accepted, with or without a trailing newline; the name is not checked because
    mirrors rewrite it (`./NAME`, a full path) while the digest is what matters.

    Raises:
        ChecksumFormatError: the first field is not 128 hex digits.
    """
    fields = text.split(maxsplit=1)
    digest = fields[0].lower() if fields else ""
    if not _SHA512_HEX.fullmatch(digest):
        shown = " ".join(text.split())[:40]
        raise ChecksumFormatError(f"expected a sha512 hex digest (128 hex digits), found {shown!r}")
    return digest
