"""Downloading keadm packages from a real HTTP server on 127.0.0.1, and the checksum format."""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kenornir.checksum import ChecksumFormatError, parse_sha512_checksum
from kenornir.packages import (
    UPSTREAM_RELEASES_URL,
    KeadmPackage,
    PackageError,
    checksum_name,
    default_cache_root,
    package_base_url,
    prepare_packages,
    tarball_name,
)
from tests.http_server import LocalHTTPServer
from tests.lab.packages import build_packages, keadm_member_digest
from tests.test_packages_offline import Member, write_tarball

VERSION = "v1.22.0"
ARCHES = ("amd64", "arm64", "arm")
# Big enough for a few 256 KiB chunks (the tarball compresses about 3:1), small enough to be quick.
BINARY_SIZE = 3 * 2**20
QUICK_RETRIES: dict[str, Any] = {"timeouts": (5.0, 5.0), "retries": 2, "backoff": 0.01}


@dataclass
class Release:
    """Lab-built packages for VERSION served the way a `download.url` mirror serves them."""

    server: LocalHTTPServer
    tarballs: dict[str, Path]
    cache_dir: Path

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/{VERSION}"

    def tarball_path(self, arch: str) -> str:
        return f"/{VERSION}/{tarball_name(VERSION, arch)}"

    def checksum_path(self, arch: str) -> str:
        return f"/{VERSION}/{checksum_name(VERSION, arch)}"

    def cached_tarball(self, arch: str) -> Path:
        return self.cache_dir / VERSION / arch / tarball_name(VERSION, arch)

    def published_sha512(self, arch: str) -> str:
        checksum = self.tarballs[arch].with_name(checksum_name(VERSION, arch))
        return checksum.read_text().strip()

    def prepare(self, arches: Sequence[str] = ARCHES, **options: Any) -> dict[str, KeadmPackage]:
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "cache_dir": self.cache_dir,
            **QUICK_RETRIES,
        }
        settings.update(options)
        return prepare_packages(VERSION, arches, download=True, offline_dir=None, **settings)


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Release]:
    www = tmp_path / "www"
    tarballs = build_packages(www / VERSION, VERSION, ARCHES, BINARY_SIZE, "flat")
    with LocalHTTPServer(www) as server:
        yield Release(server, tarballs, tmp_path / "cache")


def part_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.endswith(".part")]


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


class TestDownload:
    def test_three_arches_then_a_rerun_with_no_request(self, release: Release) -> None:
        progress: dict[str, list[tuple[int, int | None]]] = {arch: [] for arch in ARCHES}

        packages = release.prepare(progress=lambda a, d, t: progress[a].append((d, t)))

        for arch in ARCHES:
            package = packages[arch]
            size = release.tarballs[arch].stat().st_size
            assert package.source == "download"
            assert package.checksum_verified
            assert package.tarball == release.cached_tarball(arch)
            assert package.tarball.read_bytes() == release.tarballs[arch].read_bytes()
            assert package.tarball_sha512 == release.published_sha512(arch)
            assert (package.binary_sha256, package.binary_size) == keadm_member_digest(
                release.tarballs[arch]
            )
            assert progress[arch][0] == (0, size)
            assert progress[arch][-1] == (size, size)
            assert release.server.requests[release.tarball_path(arch)] == 1
        assert part_files(release.cache_dir) == []
        requests_after_first_run = sum(release.server.requests.values())

        rerun = release.prepare()

        assert {arch: p.source for arch, p in rerun.items()} == dict.fromkeys(ARCHES, "cache")
        assert {arch: p.binary_sha256 for arch, p in rerun.items()} == {
            arch: p.binary_sha256 for arch, p in packages.items()
        }
        assert sum(release.server.requests.values()) == requests_after_first_run

    def test_corrupted_cached_tarball_is_fetched_again(
        self, release: Release, caplog: pytest.LogCaptureFixture
    ) -> None:
        release.prepare(["amd64", "arm"])
        cached = release.cached_tarball("arm")
        cached.write_bytes(cached.read_bytes()[:-100])

        with caplog.at_level(logging.WARNING, logger="kenornir.packages"):
            packages = release.prepare(["amd64", "arm"])

        assert packages["amd64"].source == "cache"
        assert packages["arm"].source == "download"
        assert release.server.requests[release.tarball_path("amd64")] == 1
        assert release.server.requests[release.tarball_path("arm")] == 2
        assert cached.read_bytes() == release.tarballs["arm"].read_bytes()
        assert any("corrupt" in text and str(cached) in text for text in warnings_in(caplog))

    def test_corrupted_download_names_both_digests_and_leaves_nothing(
        self, release: Release
    ) -> None:
        release.server.corrupt(release.tarball_path("arm64"))
        served = bytearray(release.tarballs["arm64"].read_bytes())
        for index in range(1024):
            served[index] ^= 0xFF

        with pytest.raises(PackageError) as failure:
            release.prepare(["arm64"])

        message = str(failure.value)
        assert message.startswith("arm64: checksum mismatch")
        assert f"expected sha512 {release.published_sha512('arm64')}" in message
        assert f"got {hashlib.sha512(served).hexdigest()}" in message
        assert release.server.url + release.tarball_path("arm64") in message
        assert not release.cached_tarball("arm64").exists()
        assert not (release.cache_dir / VERSION / "arm64" / "keadm").exists()
        assert part_files(release.cache_dir) == []

    def test_unsafe_package_is_refused_from_a_download_too(self, release: Release) -> None:
        root = f"keadm-{VERSION}-linux-amd64"
        tarball = release.tarballs["amd64"]
        write_tarball(tarball, [Member(f"{root}/keadm/keadm", tarfile.SYMTYPE, link="/etc/shadow")])
        digest = hashlib.sha512(tarball.read_bytes()).hexdigest()
        tarball.with_name(checksum_name(VERSION, "amd64")).write_text(digest)

        with pytest.raises(PackageError, match="is a symbolic link to '/etc/shadow'"):
            release.prepare(["amd64"])
        assert not (release.cache_dir / VERSION / "amd64" / "keadm").exists()


class TestMissingFiles:
    def test_missing_checksum_fails_before_the_tarball_is_fetched(self, release: Release) -> None:
        release.server.fail_with(release.checksum_path("arm"), 404)

        with pytest.raises(PackageError) as failure:
            release.prepare(["arm"])

        message = str(failure.value)
        assert message.startswith("arm: release v1.22.0 has no checksum file for linux/arm")
        assert release.server.url + release.checksum_path("arm") in message
        assert "checksum verification off" in message
        assert release.server.requests[release.tarball_path("arm")] == 0
        assert not release.cached_tarball("arm").exists()

    def test_missing_checksum_with_verification_off_warns(
        self, release: Release, caplog: pytest.LogCaptureFixture
    ) -> None:
        release.server.fail_with(release.checksum_path("arm"), 404)

        with caplog.at_level(logging.WARNING, logger="kenornir.packages"):
            package = release.prepare(["arm"], verify_checksum=False)["arm"]

        assert package.source == "download"
        assert package.checksum_verified is False
        assert package.tarball.read_bytes() == release.tarballs["arm"].read_bytes()
        checksum_url = release.server.url + release.checksum_path("arm")
        assert any("not verified" in text and checksum_url in text for text in warnings_in(caplog))

    def test_published_checksum_is_checked_even_with_verification_off(
        self, release: Release
    ) -> None:
        release.server.corrupt(release.tarball_path("arm"))

        with pytest.raises(PackageError, match="checksum mismatch"):
            release.prepare(["arm"], verify_checksum=False)

    def test_tarball_404_names_arch_release_and_url(self, release: Release) -> None:
        release.server.fail_with(release.tarball_path("arm64"), 404)

        with pytest.raises(PackageError) as failure:
            release.prepare()

        message = str(failure.value)
        url = release.server.url + release.tarball_path("arm64")
        assert message == (
            f"arm64: release v1.22.0 has no keadm package for linux/arm64: {url} returned 404 "
            "Not Found; check keadmVersion, archGroup and download.url"
        )
        assert release.server.requests[release.tarball_path("arm64")] == 1, "a 404 is final"
        # The other arches still completed and are cached for the next run.
        assert release.cached_tarball("amd64").is_file()
        assert release.cached_tarball("arm").is_file()

    def test_every_failed_arch_is_reported(self, release: Release) -> None:
        with pytest.raises(PackageError) as failure:
            release.prepare(["amd64", "riscv64", "mips64"])

        message = str(failure.value)
        assert message.startswith("riscv64: release v1.22.0 has no checksum file for linux/riscv64")
        assert "; mips64: release v1.22.0 has no checksum file for linux/mips64" in message

    def test_other_client_errors_are_not_retried(self, release: Release) -> None:
        release.server.fail_with(release.tarball_path("amd64"), 403)

        with pytest.raises(
            PackageError, match=r"^amd64: .* returned 403 Forbidden; check download"
        ):
            release.prepare(["amd64"])
        assert release.server.requests[release.tarball_path("amd64")] == 1


class TestRetries:
    def test_server_errors_are_retried_until_success(
        self, release: Release, caplog: pytest.LogCaptureFixture
    ) -> None:
        release.server.fail_with(release.tarball_path("amd64"), 500, times=2)
        release.server.fail_with(release.checksum_path("amd64"), 503, times=1)

        with caplog.at_level(logging.WARNING, logger="kenornir.packages"):
            package = release.prepare(["amd64"], retries=2)["amd64"]

        assert package.source == "download"
        assert release.server.requests[release.tarball_path("amd64")] == 3
        assert release.server.requests[release.checksum_path("amd64")] == 2
        assert sum("retry 2 of 2" in text for text in warnings_in(caplog)) == 1

    def test_server_errors_give_up_after_the_retries(self, release: Release) -> None:
        release.server.fail_with(release.tarball_path("amd64"), 500)

        with pytest.raises(PackageError, match=r"^amd64: could not download .* \(3 attempts\)"):
            release.prepare(["amd64"], retries=2)
        assert release.server.requests[release.tarball_path("amd64")] == 3
        assert not release.cached_tarball("amd64").exists()
        assert part_files(release.cache_dir) == []

    def test_refused_connection_is_retried_then_reported(self, tmp_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # nothing listens here once the probe is closed
        url = f"http://127.0.0.1:{port}/{VERSION}"

        with pytest.raises(PackageError) as failure:
            prepare_packages(
                VERSION,
                ["arm"],
                download=True,
                base_url=url,
                offline_dir=None,
                cache_dir=tmp_path,
                **QUICK_RETRIES,
            )
        message = str(failure.value)
        assert message.startswith(f"arm: could not download {url}/{checksum_name(VERSION, 'arm')}")
        assert "(3 attempts)" in message
        assert "Connection refused" in message

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("in_body", [False, True], ids=["before-headers", "mid-body"])
    def test_stalled_server_hits_the_read_timeout(self, release: Release, in_body: bool) -> None:
        release.server.stall(release.tarball_path("arm"), in_body=in_body)

        with pytest.raises(PackageError) as failure:
            release.prepare(["arm"], timeouts=(5.0, 0.5), retries=1)

        message = str(failure.value)
        assert message.startswith("arm: could not download ")
        assert "(2 attempts)" in message
        assert "Read timed out" in message
        assert release.server.requests[release.tarball_path("arm")] == 2
        assert not release.cached_tarball("arm").exists()
        assert part_files(release.cache_dir) == []


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as a terminal's Ctrl-C does, even when pytest runs as a
    background job (a shell starts those with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class TestInterrupt:
    def test_interrupt_from_progress_leaves_no_partial_file(self, release: Release) -> None:
        seen: list[tuple[int, int | None]] = []

        def interrupt_amd64_mid_download(arch: str, done: int, total: int | None) -> None:
            if arch == "amd64" and done > 0:
                seen.append((done, total))
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            release.prepare(progress=interrupt_amd64_mid_download)

        done, total = seen[0]
        assert total is not None
        assert done < total, "the interrupt came mid-download"
        assert not release.cached_tarball("amd64").exists()
        assert part_files(release.cache_dir) == []

    @pytest.mark.timeout(60)
    @pytest.mark.usefixtures("ctrl_c_raises")
    def test_ctrl_c_in_the_main_thread_does_not_wait_for_a_silent_server(
        self, release: Release
    ) -> None:
        release.server.stall(release.tarball_path("arm64"), in_body=True)

        def ctrl_c_once_arm64_has_started(arch: str, done: int, total: int | None) -> None:
            # Called once the headers are in; the worker then blocks reading the stalled body.
            if arch == "arm64" and done == 0:
                # What the terminal does on Ctrl-C: SIGINT, handled by the main thread.
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        # A read timeout far beyond the test's own limit: only a prompt interrupt can pass.
        with pytest.raises(KeyboardInterrupt):
            release.prepare(
                ["arm64"], progress=ctrl_c_once_arm64_has_started, timeouts=(5.0, 600.0)
            )

        assert not release.cached_tarball("arm64").exists()
        assert part_files(release.cache_dir) == []

    @pytest.mark.timeout(180)
    def test_process_exits_on_ctrl_c_without_waiting_for_a_silent_server(
        self, release: Release
    ) -> None:
        # Worker threads the interpreter joins at exit would keep the process alive until the
        # 600 s read timeout; the subprocess timeout turns that hang into a failure.
        release.server.stall(release.tarball_path("arm64"), in_body=True)

        finished = subprocess.run(
            [sys.executable, "-c", CTRL_C_SCRIPT, release.base_url, str(release.cache_dir)],
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert finished.returncode == 130, finished.stderr
        assert part_files(release.cache_dir) == []


CTRL_C_SCRIPT = f"""
import os, signal, sys
from pathlib import Path
from kenornir.packages import prepare_packages

# Ctrl-C as a terminal delivers it, even when this test runs in the background (a shell starts
# background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)

def ctrl_c_once_started(arch, done, total):
    os.kill(os.getpid(), signal.SIGINT)

try:
    prepare_packages(
        "{VERSION}", ["arm64"], download=True, base_url=sys.argv[1], offline_dir=None,
        cache_dir=Path(sys.argv[2]), progress=ctrl_c_once_started, timeouts=(5.0, 600.0),
    )
except KeyboardInterrupt:
    sys.exit(130)
"""


class TestNothingToDownload:
    def test_empty_arches_make_no_request(self, release: Release) -> None:
        assert release.prepare([]) == {}
        assert sum(release.server.requests.values()) == 0
        assert not release.cache_dir.exists()


class TestLocations:
    def test_upstream_and_mirror_base_urls(self) -> None:
        assert package_base_url(VERSION, None) == f"{UPSTREAM_RELEASES_URL}/{VERSION}"
        assert package_base_url(VERSION, "") == f"{UPSTREAM_RELEASES_URL}/{VERSION}"
        # As upstream: download.url is used as given, the version is not appended.
        assert package_base_url(VERSION, "http://mirror/kubeedge/") == "http://mirror/kubeedge"
        assert UPSTREAM_RELEASES_URL == "https://github.com/kubeedge/kubeedge/releases/download"
        assert tarball_name(VERSION, "arm") == "keadm-v1.22.0-linux-arm.tar.gz"
        assert checksum_name(VERSION, "arm") == "checksum_keadm-v1.22.0-linux-arm.tar.gz.txt"

    def test_default_cache_root_follows_xdg(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        assert default_cache_root() == tmp_path / "kenornir" / "keadm"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_cache_root() == tmp_path / "home" / ".cache" / "kenornir" / "keadm"


SHA512 = hashlib.sha512(b"keadm").hexdigest()


class TestChecksumFormat:
    @pytest.mark.parametrize(
        "text",
        [
            SHA512,
            SHA512 + "\n",
            f"{SHA512}  keadm-v1.22.0-linux-amd64.tar.gz\n",
            f"{SHA512} *keadm-v1.22.0-linux-amd64.tar.gz",
            SHA512.upper() + "\r\n",
        ],
    )
    def test_accepted_forms(self, text: str) -> None:
        assert parse_sha512_checksum(text) == SHA512

    @pytest.mark.parametrize(
        "text",
        ["", "\n", SHA512[:-1], SHA512 + "0", hashlib.sha256(b"x").hexdigest(), "<html>"],
    )
    def test_rejected_forms(self, text: str) -> None:
        with pytest.raises(ChecksumFormatError, match="expected a sha512 hex digest"):
            parse_sha512_checksum(text)

    @given(data=st.binary(), name=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True))
    def test_sha512sum_output_round_trips(self, data: bytes, name: str) -> None:
        digest = hashlib.sha512(data).hexdigest()
        assert parse_sha512_checksum(f"{digest}  {name}\n") == digest
