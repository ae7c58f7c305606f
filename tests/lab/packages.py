"""Builds fake keadm release packages in upstream's layout, for the lab and the tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

FAKE_KEADM_SCRIPT = Path(__file__).with_name("fake_keadm.sh")
DEFAULT_VERSION = "v1.22.0"
DEFAULT_ARCHES = ("amd64", "arm64", "arm")
DEFAULT_BINARY_SIZE = 80 * 2**20
Layout = Literal["arch", "flat"]

# The real keadm v1.22.0 binary is 82.6 MB and its tarball 24.7 MB (about 3.3:1). Padding blocks
# that are 30% random bytes and 70% zeros compress to the same ratio under gzip.
_PADDING_BLOCK_SIZE = 64 * 1024
_PADDING_RANDOM_BYTES = _PADDING_BLOCK_SIZE * 3 // 10
# A fixed member and gzip timestamp make rebuilds byte-identical, so checksums stay stable.
_PACKAGE_MTIME = 1_735_689_600
_BUILD_RECORD = "lab-packages.json"


def package_name(version: str, arch: str) -> str:
    """The upstream release name, e.g. keadm-v1.22.0-linux-amd64 (the tarball adds .tar.gz)."""
    return f"keadm-{version}-linux-{arch}"


def checksum_path(tarball: Path) -> Path:
    """Where upstream publishes a tarball's sha512: checksum_<tarball name>.txt beside it."""
    return tarball.with_name(f"checksum_{tarball.name}.txt")


def fake_keadm_script(version: str, arch: str) -> bytes:
    """The fake keadm script with the version and arch it reports baked in."""
    script = FAKE_KEADM_SCRIPT.read_text()
    script = re.sub(r'^FAKE_VERSION=".*"$', f'FAKE_VERSION="{version}"', script, flags=re.M)
    script = re.sub(r'^FAKE_ARCH=".*"$', f'FAKE_ARCH="{arch}"', script, flags=re.M)
    return script.encode()


def build_packages(
    out_dir: Path,
    version: str = DEFAULT_VERSION,
    arches: Sequence[str] = DEFAULT_ARCHES,
    binary_size: int = DEFAULT_BINARY_SIZE,
    layout: Layout = "arch",
) -> dict[str, Path]:
    """Write one upstream-layout keadm tarball plus its sha512 checksum file per arch.

    Args:
        out_dir: root of the packages; layout "arch" writes `<out>/<arch>/<name>.tar.gz` (the
            offlinePackageDir layout), "flat" writes `<out>/<name>.tar.gz` (a download mirror).
        binary_size: size in bytes of the keadm member: the fake keadm script padded after its
            final `exit` line, so it still runs.

    Returns:
        The tarball path per arch.

    Raises:
        ValueError: binary_size is smaller than the script itself.
    """
    with ThreadPoolExecutor(max_workers=len(arches) or 1) as pool:
        futures = {
            arch: pool.submit(_build_package, out_dir, version, arch, binary_size, layout)
            for arch in arches
        }
        return {arch: future.result() for arch, future in futures.items()}


def ensure_packages(
    out_dir: Path,
    version: str = DEFAULT_VERSION,
    arches: Sequence[str] = DEFAULT_ARCHES,
    binary_size: int = DEFAULT_BINARY_SIZE,
    layout: Layout = "arch",
) -> dict[str, Path]:
    """build_packages, unless out_dir already holds a complete build with the same parameters."""
    wanted = {"version": version, "arches": list(arches), "size": binary_size, "layout": layout}
    record = out_dir / _BUILD_RECORD
    tarballs = {arch: _tarball_path(out_dir, version, arch, layout) for arch in arches}
    complete = all(path.is_file() and checksum_path(path).is_file() for path in tarballs.values())
    if complete and record.is_file() and json.loads(record.read_text()) == wanted:
        return tarballs
    tarballs = build_packages(out_dir, version, arches, binary_size, layout)
    record.write_text(json.dumps(wanted) + "\n")
    return tarballs


def keadm_member_digest(tarball: Path) -> tuple[str, int]:
    """The sha256 hex digest and the size of the keadm binary inside a package tarball."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith("/keadm/keadm"):
                binary = archive.extractfile(member)
                assert binary is not None  # a regular file member always has content
                digest = hashlib.sha256()
                while chunk := binary.read(1024 * 1024):
                    digest.update(chunk)
                return digest.hexdigest(), member.size
    raise ValueError(f"{tarball}: no keadm/keadm member")


def keadm_member_digests(packages: Mapping[str, Path]) -> dict[str, tuple[str, int]]:
    """keadm_member_digest for every package of a build_packages result, by arch."""
    return {arch: keadm_member_digest(tarball) for arch, tarball in packages.items()}


def _tarball_path(out_dir: Path, version: str, arch: str, layout: Layout) -> Path:
    directory = out_dir / arch if layout == "arch" else out_dir
    return directory / f"{package_name(version, arch)}.tar.gz"


def _build_package(
    out_dir: Path, version: str, arch: str, binary_size: int, layout: Layout
) -> Path:
    script = fake_keadm_script(version, arch)
    if binary_size < len(script):
        raise ValueError(f"binary_size {binary_size} is smaller than the script ({len(script)})")
    tarball = _tarball_path(out_dir, version, arch, layout)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    root = package_name(version, arch)
    partial = tarball.with_name(tarball.name + ".partial")
    # Written under a temporary name so an interrupted build never looks like a package.
    with (
        partial.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=_PACKAGE_MTIME) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as archive,
    ):
        for directory in (root, f"{root}/keadm"):
            archive.addfile(_member(directory, tarfile.DIRTYPE, 0o755, 0))
        binary = _padded_binary(script, binary_size, seed=f"{version}/{arch}")
        archive.addfile(_member(f"{root}/keadm/keadm", tarfile.REGTYPE, 0o755, binary_size), binary)
        version_file = f"{version}\n".encode()
        archive.addfile(
            _member(f"{root}/version", tarfile.REGTYPE, 0o644, len(version_file)),
            io.BytesIO(version_file),
        )
    partial.replace(tarball)
    with tarball.open("rb") as written:
        digest = hashlib.file_digest(written, "sha512").hexdigest()
    checksum_path(tarball).write_text(digest + "\n")
    return tarball


def _member(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.mode = mode
    member.size = size
    member.mtime = _PACKAGE_MTIME
    return member


def _padded_binary(script: bytes, size: int, seed: str) -> io.BufferedReader:
    """A stream of `size` bytes: the script, then deterministic padding blocks."""
    return io.BufferedReader(_ChunkStream(_padded_chunks(script, size, seed)), 1024 * 1024)


def _padded_chunks(script: bytes, size: int, seed: str) -> Iterator[bytes]:
    yield script
    remaining = size - len(script)
    # Seeded per version and arch: reproducible, and the arches' binaries differ.
    generator = random.Random(seed)
    zeros = bytes(_PADDING_BLOCK_SIZE - _PADDING_RANDOM_BYTES)
    while remaining > 0:
        block = generator.randbytes(_PADDING_RANDOM_BYTES) + zeros
        yield block[:remaining]
        remaining -= len(block)


class _ChunkStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks (tarfile reads members by size)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count
