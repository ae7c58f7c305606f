"""Controller-side keadm packages: download or offline tarball, checksum, cache and safe unpack."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import pwd
import re
import stat
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TypeVar

from kenornir import __version__
from kenornir.checksum import ChecksumFormatError, file_digest, parse_sha512_checksum
from kenornir.template import mask_secrets, masked_url, url_secrets

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

UPSTREAM_RELEASES_URL = "https://github.com/kubeedge/kubeedge/releases/download"
DEFAULT_TIMEOUTS = (10.0, 60.0)
"""(connect, read) seconds; the read timeout bounds each wait for data, not the whole download."""

PackageSource = Literal["download", "cache", "offline"]
ProgressCallback = Callable[[str, int, int | None], None]
"""progress(arch, bytes_done, bytes_total or None); called from the download threads."""

_T = TypeVar("_T")
_CHUNK_BYTES = 256 * 1024
_BINARY_NAME = "keadm"
_ZSTD_NAME = "keadm.zst"
# On a 42 MB release binary, level 9 is 12% smaller than gzip -9 and takes 0.7 s, once per
# release and arch; levels above 12 cost many seconds for a few percent.
_ZSTD_LEVEL = 9
_UNPACK_RECORD_NAME = "keadm.unpacked.json"
_SAFE_PATH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# Identity encoding: a server that gzips the .tar.gz on the fly would otherwise hand requests a
# body it decodes, and the digest would no longer be the published one.
_DOWNLOAD_HEADERS = {"User-Agent": f"kenornir/{__version__}", "Accept-Encoding": "identity"}


class PackageError(Exception):
    """A package could not be prepared; the message is one line meant for the user."""


@dataclass(frozen=True)
class KeadmPackage:
    """A verified keadm release for one arch, unpacked in the controller's cache."""

    version: str
    arch: str
    tarball: Path
    binary: Path
    binary_size: int
    binary_sha256: str
    tarball_sha512: str
    checksum_verified: bool
    source: PackageSource
    # The binary's member name exactly as stored in the tarball, so a node can unpack it alone.
    binary_member: str
    # The binary as one zstd frame (content checksum included): what nodes with zstd receive,
    # as they unpack it about 5x faster than the tarball's gzip.
    binary_zstd: Path

    def to_record(self) -> dict[str, str | bool]:
        """What report.json keeps of it: the release, where it came from, whether it was checked."""
        return {
            "version": self.version,
            "source": self.source,
            "sha512_verified": self.checksum_verified,
        }


def tarball_name(version: str, arch: str) -> str:
    """Release asset name of the keadm tarball, as upstream publishes it."""
    return f"keadm-{version}-linux-{arch}.tar.gz"


def checksum_name(version: str, arch: str) -> str:
    """Release asset name of the tarball's sha512 checksum file."""
    return f"checksum_{tarball_name(version, arch)}.txt"


def package_base_url(version: str, base_url: str | None) -> str:
    """Where the release assets live: `download.url` as given (no version appended), else GitHub."""
    return base_url.rstrip("/") if base_url else f"{UPSTREAM_RELEASES_URL}/{version}"


def default_cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/kenornir/keadm`."""
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg_cache) if Path(xdg_cache).is_absolute() else Path.home() / ".cache"
    return base / "kenornir" / "keadm"


def private_cache_root(cache_root: Path) -> Path:
    """The real path of a cache root no other user can write to, created 0700 when missing.

    The rule is OpenSSH's safe-path check: the root and every parent must be owned by the
    current user or root and writable by neither group nor others. A parent that is sticky
    (like /tmp) may be writable by all, since nobody can then replace an entry of ours in it;
    the root itself may not. Missing dirs (parents included) are created 0700.

    Symlinks in the given path, the root included, are resolved first, as OpenSSH does: what is
    checked is every dir of the real path, and the real path is what the caller uses from then
    on, so a link changed after the check cannot redirect the run. Inside the root kenornir
    makes its dirs itself, so a symlink there is refused (see private_package_dirs).

    Raises:
        PackageError: a dir is unsafe (the message names it and what to do), or unreadable.
    """
    try:
        real = cache_root.resolve()
        existing = next(path for path in (real, *real.parents) if path.exists())
        for directory in reversed((existing, *existing.parents)):
            # lstat: a component that turned into a link since resolve() is refused, not followed.
            info = directory.lstat()
            # Only parents of the root may be shared sticky dirs.
            parent = directory != real
            _require_private_dir(directory, info, cache_root, sticky_parent=parent)
        for name in real.relative_to(existing).parts:
            existing = _private_subdir(existing, name, cache_root)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise PackageError(f"cannot use keadm cache {cache_root}: {exc}") from None
    return real


def private_package_dirs(cache_root: Path, version: str, arches: Sequence[str]) -> dict[str, Path]:
    """`ROOT/<ver>/<arch>/` per arch (tarball, checksum, unpacked binary) under the checked root.

    Each dir is made 0700 when missing and checked as private_cache_root checks; a symlink
    there is refused.
    """
    root = private_cache_root(cache_root)
    try:
        version_dir = _private_subdir(root, version, cache_root)
        return {arch: _private_subdir(version_dir, arch, cache_root) for arch in arches}
    except OSError as exc:
        raise PackageError(f"cannot use keadm cache {root}: {exc}") from None


def _private_subdir(parent: Path, name: str, cache_root: Path) -> Path:
    path = parent / name
    with suppress(FileExistsError):  # checked below, whoever made it
        path.mkdir(mode=0o700)
    _require_private_dir(path, path.lstat(), cache_root, sticky_parent=False)
    return path


def _require_private_dir(
    path: Path, info: os.stat_result, cache_root: Path, *, sticky_parent: bool
) -> None:
    problem = _shared_dir_problem(path, info, sticky_parent=sticky_parent)
    if problem is not None:
        raise PackageError(f"unsafe keadm cache {cache_root}: {problem}")


def _shared_dir_problem(path: Path, info: os.stat_result, *, sticky_parent: bool) -> str | None:
    """What would let another user put files in or under path, and what to do; None if nothing."""
    another_dir = "or use another --cache-dir"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link: remove it (kenornir makes a private dir there)"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory: remove it {another_dir}"
    if info.st_uid not in (0, os.geteuid()):
        return (
            f"{path} is owned by {_user_name(info.st_uid)}, not by you or root: "
            f"its content may be theirs; use another --cache-dir"
        )
    bits = (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
    writers = " and ".join(who for who, bit in bits if info.st_mode & bit)
    if not writers or (sticky_parent and info.st_mode & stat.S_ISVTX):
        return None
    mode = f"mode {stat.S_IMODE(info.st_mode):04o}"
    if sticky_parent:
        return (
            f"{path} is writable by {writers} ({mode}, not sticky): "
            f"chmod go-w {path}, {another_dir}"
        )
    # A cache dir others could write to may hold what they planted: tightening it is not enough.
    return (
        f"{path} is writable by {writers} ({mode}): chmod go-w {path} and delete what you did "
        f"not put there, {another_dir}"
    )


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def prepare_packages(
    version: str,
    arches: Sequence[str],
    *,
    download: bool,
    base_url: str | None,
    offline_dir: Path | None,
    cache_dir: Path | None = None,
    verify_checksum: bool = True,
    progress: ProgressCallback | None = None,
    session: requests.Session | None = None,
    timeouts: tuple[float, float] = DEFAULT_TIMEOUTS,
    retries: int = 3,
    backoff: float = 1.0,
) -> dict[str, KeadmPackage]:
    """Make the keadm binary of every arch available on the controller, one thread per arch.

    Args:
        version: release tag, with its leading "v" (`v1.22.0`).
        arches: arches to prepare; empty prepares nothing and touches neither network nor disk.
        download: fetch from `base_url` (or GitHub), else read `offline_dir`.
        base_url: `download.url`; None or "" means GitHub's release page for `version`.
        offline_dir: `offlinePackageDir`, holding `<arch>/NAME` or `NAME`; only read, never written.
        cache_dir: cache root (default `default_cache_root()`); files go to `ROOT/<ver>/<arch>/`.
            Made 0700 when missing; refused when others could write to it (see
            `private_cache_root`).
        verify_checksum: when False a package without a checksum file (none published, none
            beside the offline tarball) is used unverified with a warning; when True it is
            refused. A checksum that exists is always checked.
        progress: download progress per arch, called from worker threads.
        session: requests session to use (one is created and closed otherwise).
        timeouts: (connect, read) seconds for every HTTP request.
        retries: further attempts after a connection error, timeout or 5xx (never after a 4xx).
        backoff: seconds before the first retry, doubling each time.

    Returns:
        {arch: KeadmPackage} for every requested arch.

    Raises:
        PackageError: any arch failed; the message names each failed arch and what to do.
        KeyboardInterrupt: propagated promptly; no partial file is left at a final path.
    """
    wanted = list(dict.fromkeys(arches))
    if not wanted:
        return {}
    _require_path_safe("keadmVersion", version)
    for arch in wanted:
        _require_path_safe("arch", arch)
    if not download and offline_dir is None:
        raise PackageError(
            "download is disabled and no offlinePackageDir is set: "
            "set keadm.offlinePackageDir or enable keadm.download"
        )
    arch_dirs = private_package_dirs(
        cache_dir if cache_dir is not None else default_cache_root(), version, wanted
    )
    parts = _PartFiles()
    offline = None if download else offline_dir
    own_session = _new_session() if offline is None and session is None else None
    http = session or own_session
    credentials = url_secrets(base_url or "")

    def prepare_one(arch: str) -> KeadmPackage:
        arch_dir = arch_dirs[arch]
        try:
            if offline is not None:
                return _prepare_offline(
                    version, arch, offline, arch_dir, parts, verify_checksum=verify_checksum
                )
            assert http is not None  # a session exists whenever there is something to download
            fetcher = _Fetcher(http, timeouts, retries, backoff, parts, progress)
            base = package_base_url(version, base_url or None)
            return _prepare_download(
                fetcher,
                version,
                arch,
                base_url=base,
                arch_dir=arch_dir,
                verify_checksum=verify_checksum,
            )
        except OSError as exc:  # requests' exceptions too, whose text may hold the URL
            reason = mask_secrets(str(exc), credentials)
            raise PackageError(f"{arch}: cannot prepare keadm {version}: {reason}") from None

    try:
        return _prepare_concurrently(wanted, prepare_one, parts)
    finally:
        if own_session is not None:
            own_session.close()


def _new_session() -> requests.Session:
    import requests  # here, not at the top: runs from an offline dir start 50 ms sooner

    return requests.Session()


def _require_path_safe(what: str, value: str) -> None:
    # Both end up as directory names in the cache: nothing may climb out of it.
    if not _SAFE_PATH_NAME.fullmatch(value):
        raise PackageError(
            f"{what} {value!r} cannot name a package: use letters, digits, '.', '_', '+', '-'"
        )


def _prepare_concurrently(
    arches: list[str], prepare_one: Callable[[str], KeadmPackage], parts: _PartFiles
) -> dict[str, KeadmPackage]:
    futures = {arch: Future[KeadmPackage]() for arch in arches}
    for arch, future in futures.items():
        # Daemon threads, not a ThreadPoolExecutor: the interpreter joins executor threads at
        # exit, so a worker stuck on a silent server would hold up the exit after Ctrl-C.
        worker = threading.Thread(
            target=_settle, args=(future, prepare_one, arch), name=f"keadm-{arch}", daemon=True
        )
        worker.start()
    try:
        pending = set(futures.values())
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                failure = future.exception()
                # A PackageError lets the other arches finish (they fill the cache); anything
                # else, a KeyboardInterrupt from a progress callback included, stops everything.
                if failure is not None and not isinstance(failure, PackageError):
                    raise failure
    except BaseException:
        # Ctrl-C lands here in the main thread. Deleting the partial files now, rather than
        # waiting for the workers to notice, keeps the interrupt prompt even mid-read.
        parts.cancel()
        raise
    errors = [str(f.exception()) for f in futures.values() if f.exception() is not None]
    if errors:
        raise PackageError("; ".join(errors))
    return {arch: future.result() for arch, future in futures.items()}


def _settle(future: Future[_T], work: Callable[[str], _T], arch: str) -> None:
    try:
        future.set_result(work(arch))
    except BaseException as exc:  # handed to the main thread, which decides what to raise
        future.set_exception(exc)


def _prepare_download(
    fetcher: _Fetcher,
    version: str,
    arch: str,
    *,
    base_url: str,
    arch_dir: Path,
    verify_checksum: bool,
) -> KeadmPackage:
    tarball = arch_dir / tarball_name(version, arch)
    stored_checksum = arch_dir / checksum_name(version, arch)
    cached_digest = _verified_cached_tarball(tarball, stored_checksum, arch)
    if cached_digest is not None:
        log.info("%s: using cached %s", arch, tarball)
        return _unpacked_package(
            version,
            arch,
            tarball,
            cached_digest,
            fetcher.parts,
            verified=True,
            source="cache",
            arch_dir=arch_dir,
        )

    checksum_url = f"{base_url}/{checksum_name(version, arch)}"
    tarball_url = f"{base_url}/{tarball_name(version, arch)}"
    expected = fetcher.fetch_checksum(checksum_url, version, arch, required=verify_checksum)
    log.info("%s: downloading %s", arch, masked_url(tarball_url))
    digest = fetcher.download_verified(tarball_url, tarball, expected, version, arch)
    verified = expected is not None
    if verified:
        # Keeping the verified checksum lets a rerun check the cached tarball with no network
        # request at all (`prepare` on a connected machine, then an air-gapped run).
        with fetcher.parts.replacing(stored_checksum) as out:
            out.write(f"{expected}  {tarball.name}\n".encode())
    return _unpacked_package(
        version,
        arch,
        tarball,
        digest,
        fetcher.parts,
        verified=verified,
        source="download",
        arch_dir=arch_dir,
    )


def _verified_cached_tarball(tarball: Path, stored_checksum: Path, arch: str) -> str | None:
    """The cached tarball's sha512 when it matches its stored checksum; else clear both away.

    Clearing means a failed download can never leave an unverified tarball at the final path.
    """
    if not tarball.is_file():
        stored_checksum.unlink(missing_ok=True)
        return None
    try:
        expected = parse_sha512_checksum(stored_checksum.read_text())
    except (OSError, ChecksumFormatError):
        log.info("%s: cached %s has no verified checksum; downloading it again", arch, tarball)
    else:
        actual = file_digest(tarball, "sha512")
        if actual == expected:
            return actual
        log.warning(
            "%s: cached %s is corrupt (sha512 %s, expected %s); downloading it again",
            arch,
            tarball,
            actual,
            expected,
        )
    tarball.unlink(missing_ok=True)
    stored_checksum.unlink(missing_ok=True)
    return None


def _prepare_offline(
    version: str,
    arch: str,
    offline_dir: Path,
    arch_dir: Path,
    parts: _PartFiles,
    *,
    verify_checksum: bool,
) -> KeadmPackage:
    name = tarball_name(version, arch)
    candidates = [offline_dir / arch / name, offline_dir / name]
    tarball = next((path for path in candidates if path.is_file()), None)
    if tarball is None:
        looked_at = ", ".join(str(path) for path in candidates)
        raise PackageError(
            f"{arch}: no offline keadm {version} package; looked at {looked_at}: "
            "put the release tarball there or enable keadm.download"
        )
    digest = file_digest(tarball, "sha512")
    checksum_file = tarball.with_name(checksum_name(version, arch))
    verified = checksum_file.is_file()
    if verified:
        try:
            expected = parse_sha512_checksum(checksum_file.read_text())
        except ChecksumFormatError as exc:
            raise PackageError(f"{arch}: {checksum_file}: {exc}") from None
        if digest != expected:
            raise PackageError(
                f"{arch}: offline package {tarball} does not match {checksum_file}: "
                f"expected sha512 {expected}, got {digest}; replace the corrupted file"
            )
    elif verify_checksum:
        raise PackageError(
            f"{arch}: offline package {tarball} has no checksum file {checksum_file} beside it: "
            "put the release's checksum file there, or use the package unverified with "
            "--insecure-skip-checksum (or keadm.download.verifyChecksum: false)"
        )
    else:
        log.warning(
            "%s: offline package %s is not verified: no checksum file %s beside it",
            arch,
            tarball,
            checksum_file,
        )
    return _unpacked_package(
        version,
        arch,
        tarball,
        digest,
        parts,
        verified=verified,
        source="offline",
        arch_dir=arch_dir,
    )


class _TransientHTTPError(Exception):
    """A 5xx answer or a truncated body: worth another attempt."""


class _Cancelled(Exception):
    """Preparation was interrupted in another thread; stop quietly."""


@dataclass(frozen=True)
class _Fetcher:
    """HTTP with timeouts, retries with exponential backoff, progress and cancellation."""

    session: requests.Session
    timeouts: tuple[float, float]
    retries: int
    backoff: float
    parts: _PartFiles
    progress: ProgressCallback | None

    def fetch_checksum(self, url: str, version: str, arch: str, *, required: bool) -> str | None:
        """The published sha512, or None when there is none and it is not `required`."""

        def attempt() -> str | None:
            self.parts.stop_if_cancelled()
            with self.session.get(url, timeout=self.timeouts, headers=_DOWNLOAD_HEADERS) as answer:
                if answer.status_code == 404:
                    return None
                _raise_for_status(answer, url, version, arch)
                return answer.text

        text = self._with_retries(attempt, url, arch)
        shown = masked_url(url)
        if text is None:
            if required:
                raise PackageError(
                    f"{arch}: release {version} has no checksum file for linux/{arch}: {shown} "
                    "returned 404; check keadmVersion, archGroup and download.url, or turn "
                    "checksum verification off to use the package unverified"
                )
            log.warning(
                "%s: no checksum file at %s (404); the package is not verified", arch, shown
            )
            return None
        try:
            return parse_sha512_checksum(text)
        except ChecksumFormatError as exc:
            raise PackageError(f"{arch}: checksum file {shown}: {exc}") from None

    def download_verified(
        self, url: str, final: Path, expected: str | None, version: str, arch: str
    ) -> str:
        """Stream `url` to a partial file beside `final`, rename it only once it verifies."""
        with self.parts.replacing(final) as out:
            digest = self._with_retries(lambda: self._stream(url, out, version, arch), url, arch)
            if expected is not None and digest != expected:
                raise PackageError(
                    f"{arch}: checksum mismatch for {masked_url(url)}: expected sha512 {expected}, "
                    f"got {digest}; the download was deleted, check download.url and retry"
                )
        return digest

    def _stream(self, url: str, out: IO[bytes], version: str, arch: str) -> str:
        self.parts.stop_if_cancelled()
        out.seek(0)
        out.truncate()
        with self.session.get(
            url, stream=True, timeout=self.timeouts, headers=_DOWNLOAD_HEADERS
        ) as answer:
            _raise_for_status(answer, url, version, arch)
            length = answer.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            digest = hashlib.sha512()
            done = 0
            self._report(arch, done, total)
            for chunk in answer.iter_content(_CHUNK_BYTES):
                self.parts.stop_if_cancelled()
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                self._report(arch, done, total)
        if total is not None and done != total:
            raise _TransientHTTPError(f"body ended after {done} of {total} bytes")
        return digest.hexdigest()

    def _with_retries(self, attempt: Callable[[], _T], url: str, arch: str) -> _T:
        import requests  # loaded by _new_session or the caller's session already

        failures = 0
        while True:
            try:
                return attempt()
            except (requests.ConnectionError, requests.Timeout, _TransientHTTPError) as exc:
                failures += 1
                # requests names the URL in some of its messages: its credentials are masked.
                reason = mask_secrets(" ".join(str(exc).split()), url_secrets(url))
                if failures > self.retries:
                    raise PackageError(
                        f"{arch}: could not download {masked_url(url)} ({failures} attempts): "
                        f"{reason}; check the network and download.url"
                    ) from None
                delay = self.backoff * 2 ** (failures - 1)
                log.warning(
                    "%s: %s failed (%s); retry %d of %d in %.2f s",
                    arch,
                    masked_url(url),
                    reason,
                    failures,
                    self.retries,
                    delay,
                )
                if self.parts.cancelled.wait(delay):
                    raise _Cancelled from None

    def _report(self, arch: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(arch, done, total)


def _raise_for_status(answer: requests.Response, url: str, version: str, arch: str) -> None:
    status = answer.status_code
    if status < 400:
        return
    # The reason phrase is the server's own text: masked along with the URL.
    what = mask_secrets(f"{url} returned {status} {answer.reason}", url_secrets(url))
    if status >= 500:
        raise _TransientHTTPError(what)
    if status == 404:
        raise PackageError(
            f"{arch}: release {version} has no keadm package for linux/{arch}: {what}; "
            "check keadmVersion, archGroup and download.url"
        )
    raise PackageError(f"{arch}: {what}; check download.url")


class _PartFiles:
    """The `.part` files of one preparation; cancelling deletes them and refuses new ones."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._open: set[Path] = set()

    @contextmanager
    def replacing(self, final: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
        """Write a `.part` file beside `final`; it replaces `final` only if the block succeeds."""
        with self._lock:
            self.stop_if_cancelled()
            descriptor, name = tempfile.mkstemp(
                dir=final.parent, prefix=f"{final.name}.", suffix=".part"
            )
            part = Path(name)
            self._open.add(part)
        try:
            with os.fdopen(descriptor, "wb") as out:
                yield out
            part.chmod(mode)
            with self._lock:
                self.stop_if_cancelled()
                part.replace(final)
        finally:
            with self._lock:
                self._open.discard(part)
            part.unlink(missing_ok=True)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled.set()
            for part in self._open:
                part.unlink(missing_ok=True)
            self._open.clear()

    def stop_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise _Cancelled


Identity = tuple[int, int, int, int]
"""A file's inode, size, mtime and ctime (ns): any write, chmod or replacement changes it."""


@dataclass(frozen=True)
class _UnpackRecord:
    """What was unpacked: which tarball produced the binary, the digests of the binary and its
    zstd frame, and their identities then (so an untouched file need not be hashed again).

    Fields after binary_member are None in records written by earlier versions.
    """

    tarball_sha512: str
    binary_sha256: str
    binary_member: str
    zstd_sha256: str | None = None
    binary_identity: Identity | None = None
    zstd_identity: Identity | None = None


def _identity(path: Path) -> Identity | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _intact(path: Path, sha256: str | None, identity: Identity | None) -> bool:
    """path still holds the content with that sha256: the same identity, or else the same hash."""
    current = _identity(path)
    if current is None or sha256 is None:
        return False
    return current == identity or file_digest(path, "sha256") == sha256


def _unpacked_package(
    version: str,
    arch: str,
    tarball: Path,
    tarball_sha512: str,
    parts: _PartFiles,
    *,
    verified: bool,
    source: PackageSource,
    arch_dir: Path,
) -> KeadmPackage:
    """The package with its binary unpacked in `arch_dir`, and compressed there with zstd.

    A binary or frame already there is reused only when it still is what this very tarball
    unpacked to.
    """
    binary, frame = arch_dir / _BINARY_NAME, arch_dir / _ZSTD_NAME
    record_path = arch_dir / _UNPACK_RECORD_NAME
    record = _read_unpack_record(record_path)
    same_tarball = record is not None and record.tarball_sha512 == tarball_sha512
    if (
        record is not None
        and same_tarball
        and _intact(binary, record.binary_sha256, record.binary_identity)
    ):
        binary_sha256, binary_member = record.binary_sha256, record.binary_member
        reuse_frame = _intact(frame, record.zstd_sha256, record.zstd_identity)
    else:
        binary_sha256, binary_member = _unpack_keadm(tarball, binary, version, arch, parts)
        reuse_frame = False
    if reuse_frame and record is not None and record.zstd_sha256 is not None:
        zstd_sha256 = record.zstd_sha256
    else:
        zstd_sha256 = _compress_zstd(binary, frame, parts)
    updated = _UnpackRecord(
        tarball_sha512,
        binary_sha256,
        binary_member,
        zstd_sha256,
        _identity(binary),
        _identity(frame),
    )
    if updated != record:
        with parts.replacing(record_path) as out:
            out.write(json.dumps(asdict(updated)).encode())
    return KeadmPackage(
        version=version,
        arch=arch,
        tarball=tarball,
        binary=binary,
        binary_size=binary.stat().st_size,
        binary_sha256=binary_sha256,
        tarball_sha512=tarball_sha512,
        checksum_verified=verified,
        source=source,
        binary_member=binary_member,
        binary_zstd=frame,
    )


def _read_unpack_record(path: Path) -> _UnpackRecord | None:
    try:
        fields = json.loads(path.read_text())

        def optional_identity(name: str) -> Identity | None:
            value = fields.get(name)
            if value is None:
                return None
            inode, size, mtime_ns, ctime_ns = (int(number) for number in value)
            return (inode, size, mtime_ns, ctime_ns)

        zstd_sha256 = fields.get("zstd_sha256")
        return _UnpackRecord(
            str(fields["tarball_sha512"]),
            str(fields["binary_sha256"]),
            str(fields["binary_member"]),
            str(zstd_sha256) if zstd_sha256 is not None else None,
            optional_identity("binary_identity"),
            optional_identity("zstd_identity"),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _compress_zstd(binary: Path, frame: Path, parts: _PartFiles) -> str:
    """Write binary to `frame` as one zstd frame with its size and checksum; returns its sha256.

    The checksum lets zstd on the node refuse a frame damaged on the way.
    """
    import zstandard  # only when a frame is made: once per release and arch

    # One thread: the arches are compressed side by side already, and zstd's worker threads
    # (threads=-1) oversubscribed the CPUs and held about 80 MiB each (measured: 3 arches of
    # 80 MiB took 4.3 s and 311 MiB peak with them, 2.4 s and 66 MiB without).
    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    with binary.open("rb") as source, parts.replacing(frame) as out:
        compressor.copy_stream(source, out, size=binary.stat().st_size)
    return file_digest(frame, "sha256")


def _unpack_keadm(
    tarball: Path, binary: Path, version: str, arch: str, parts: _PartFiles
) -> tuple[str, str]:
    """Write the package's keadm to `binary` (0755), in one pass over the tarball.

    Every member is checked as the pass reaches it, and the binary replaces `binary` only when
    the whole tarball passed: one unsafe member refuses the package whole. Only that one member
    is ever extracted, by hand, so tarfile's extraction filters never come into play; the checks
    here are what keeps a hostile package out. (One pass matters: listing the members first and
    extracting after made gzip decompress the whole tarball twice.)

    Returns its sha256 and its member name in the tarball.
    """
    root = f"keadm-{version}-linux-{arch}"
    wanted = f"{root}/keadm/{_BINARY_NAME}"
    found: tarfile.TarInfo | None = None
    digest = hashlib.sha256()
    try:
        with tarfile.open(tarball, "r|gz") as archive, parts.replacing(binary, mode=0o755) as out:
            for member in archive:
                problem = _unsafe_member_reason(member, root)
                if problem is not None:
                    raise PackageError(
                        f"{arch}: refusing unsafe package {tarball}: member {member.name!r} "
                        f"{problem}; nothing was unpacked"
                    )
                if _member_path(member) != wanted:
                    continue
                if found is not None:
                    raise PackageError(
                        f"{arch}: refusing package {tarball}: {wanted} appears twice"
                    )
                found = member
                source = archive.extractfile(member) if member.isfile() else None
                while source is not None and (chunk := source.read(_CHUNK_BYTES)):
                    out.write(chunk)
                    digest.update(chunk)
            if found is None or not found.isfile():
                raise PackageError(
                    f"{arch}: package {tarball} has no regular file {wanted}: "
                    "is it a keadm release tarball for this version and arch?"
                )
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise PackageError(
            f"{arch}: {tarball} is not a readable tar.gz ({exc}); replace it and prepare again"
        ) from None
    return digest.hexdigest(), found.name


def _member_path(member: tarfile.TarInfo) -> str:
    return "/".join(part for part in member.name.split("/") if part not in ("", "."))


def _unsafe_member_reason(member: tarfile.TarInfo, root: str) -> str | None:
    if member.name.startswith("/"):
        return "has an absolute path"
    if ".." in member.name.split("/"):
        return "climbs out of the package with '..'"
    if member.issym():
        return f"is a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"is a hard link to {member.linkname!r}"
    if member.isdev():
        return "is a device or fifo"
    if not (member.isfile() or member.isdir()):
        return "is neither a regular file nor a directory"
    if _member_path(member).split("/")[0] != root:
        return f"lies outside {root}/"
    return None
