"""Offline packages, the unpacked-binary cache and the safe unpack of hostile tarballs."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

import kenornir.packages
from kenornir.packages import (
    KeadmPackage,
    PackageError,
    checksum_name,
    prepare_packages,
    tarball_name,
)
from tests.lab.packages import Layout, build_packages, checksum_path, keadm_member_digest

VERSION = "v1.22.0"
ARCHES = ("amd64", "arm64", "arm")
ROOT = f"keadm-{VERSION}-linux-amd64"
BINARY_SIZE = 256 * 1024


def prepare_offline(
    offline_dir: Path,
    cache_dir: Path,
    arches: Sequence[str] = ARCHES,
    *,
    verify_checksum: bool = True,
) -> dict[str, KeadmPackage]:
    return prepare_packages(
        VERSION,
        arches,
        download=False,
        base_url=None,
        offline_dir=offline_dir,
        cache_dir=cache_dir,
        verify_checksum=verify_checksum,
    )


def files_under(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.fixture
def offline_dir(tmp_path: Path) -> Path:
    return tmp_path / "offline"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


class TestOfflineLayouts:
    @pytest.mark.parametrize("layout", ["arch", "flat"])
    def test_both_layouts_unpack_into_the_cache(
        self, layout: Layout, offline_dir: Path, cache_dir: Path
    ) -> None:
        tarballs = build_packages(offline_dir, VERSION, ARCHES, BINARY_SIZE, layout)
        offline_before = files_under(offline_dir)

        packages = prepare_packages(
            VERSION,
            ARCHES,
            download=False,
            base_url=None,
            offline_dir=offline_dir,
            cache_dir=cache_dir,
        )

        assert sorted(packages) == sorted(ARCHES)
        for arch, package in packages.items():
            sha256, size = keadm_member_digest(tarballs[arch])
            assert package.source == "offline"
            assert package.checksum_verified
            assert package.tarball == tarballs[arch]
            assert package.binary == cache_dir / VERSION / arch / "keadm"
            assert (package.binary_sha256, package.binary_size) == (sha256, size)
            assert hashlib.sha256(package.binary.read_bytes()).hexdigest() == sha256
            assert stat.S_IMODE(package.binary.stat().st_mode) == 0o755
            tarball_sha512 = hashlib.sha512(tarballs[arch].read_bytes()).hexdigest()
            assert package.tarball_sha512 == tarball_sha512
        assert files_under(offline_dir) == offline_before, "the offline dir is never written"

    def test_without_checksum_file_is_refused(self, offline_dir: Path, cache_dir: Path) -> None:
        tarball = build_packages(offline_dir, VERSION, ["arm64"], BINARY_SIZE)["arm64"]
        checksum = tarball.with_name(checksum_name(VERSION, "arm64"))
        checksum.unlink()

        with pytest.raises(PackageError) as failure:
            prepare_offline(offline_dir, cache_dir, ["arm64"])

        message = str(failure.value)
        assert message.startswith(f"arm64: offline package {tarball} has no checksum file ")
        assert str(checksum) in message and "--insecure-skip-checksum" in message
        assert "\n" not in message
        assert not (cache_dir / VERSION / "arm64" / "keadm").exists()

    def test_without_checksum_file_and_verification_off_is_used_with_a_warning(
        self, offline_dir: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        tarball = build_packages(offline_dir, VERSION, ["arm64"], BINARY_SIZE)["arm64"]
        tarball.with_name(checksum_name(VERSION, "arm64")).unlink()

        with caplog.at_level(logging.WARNING, logger="kenornir.packages"):
            packages = prepare_offline(offline_dir, cache_dir, ["arm64"], verify_checksum=False)

        package = packages["arm64"]
        assert package.checksum_verified is False
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("not verified" in text and str(tarball) in text for text in warnings)

    def test_corrupted_tarball_names_both_digests_and_stays_put(
        self, offline_dir: Path, cache_dir: Path
    ) -> None:
        tarball = build_packages(offline_dir, VERSION, ["arm"], BINARY_SIZE, "flat")["arm"]
        expected = tarball.with_name(checksum_name(VERSION, "arm")).read_text().strip()
        corrupted = bytearray(tarball.read_bytes())
        corrupted[len(corrupted) // 2] ^= 0x01
        tarball.write_bytes(corrupted)
        actual = hashlib.sha512(corrupted).hexdigest()

        with pytest.raises(PackageError) as failure:
            prepare_offline(offline_dir, cache_dir, ["arm"])

        message = str(failure.value)
        assert message.startswith("arm: ")
        assert f"expected sha512 {expected}" in message
        assert f"got {actual}" in message
        assert str(tarball) in message
        assert tarball.read_bytes() == corrupted, "the user's offline file is left alone"
        assert not (cache_dir / VERSION / "arm" / "keadm").exists()

    def test_missing_package_lists_every_path_looked_at(
        self, offline_dir: Path, cache_dir: Path
    ) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)

        with pytest.raises(PackageError) as failure:
            prepare_offline(offline_dir, cache_dir, ["amd64", "arm64"])

        message = str(failure.value)
        name = tarball_name(VERSION, "arm64")
        assert message.startswith("arm64: ")
        assert str(offline_dir / "arm64" / name) in message
        assert str(offline_dir / name) in message
        assert "\n" not in message

    def test_download_disabled_without_offline_dir_is_refused(self, cache_dir: Path) -> None:
        with pytest.raises(PackageError, match="offlinePackageDir"):
            prepare_packages(
                VERSION,
                ["amd64"],
                download=False,
                base_url=None,
                offline_dir=None,
                cache_dir=cache_dir,
            )
        assert not cache_dir.exists()


class TestNothingToPrepare:
    def test_empty_arches_touch_nothing(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere"
        assert prepare_offline(missing, missing / "cache", []) == {}
        assert not missing.exists()

    @pytest.mark.parametrize(("version", "arch"), [("../v1", "amd64"), (VERSION, "../amd64")])
    def test_names_that_would_leave_the_cache_are_refused(
        self, version: str, arch: str, offline_dir: Path, cache_dir: Path
    ) -> None:
        with pytest.raises(PackageError, match="cannot name a package"):
            prepare_packages(
                version,
                [arch],
                download=False,
                base_url=None,
                offline_dir=offline_dir,
                cache_dir=cache_dir,
            )
        assert not cache_dir.exists()


class TestUnpackedBinaryCache:
    def test_intact_binary_is_reused(self, offline_dir: Path, cache_dir: Path) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)
        first = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]
        inode = first.binary.stat().st_ino

        second = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]

        assert second == first
        assert second.binary.stat().st_ino == inode

    def test_untouched_binary_and_frame_are_not_hashed_again(
        self, offline_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)
        package = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]
        hashed: list[Path] = []
        real_digest = kenornir.packages.file_digest

        def recording_digest(path: Path, algorithm: str) -> str:
            hashed.append(path)
            return real_digest(path, algorithm)

        monkeypatch.setattr(kenornir.packages, "file_digest", recording_digest)
        assert prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"] == package
        assert package.binary not in hashed and package.binary_zstd not in hashed

        os.utime(package.binary)  # same content, new identity: hashed, not unpacked again
        inode = package.binary.stat().st_ino
        assert prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"] == package
        assert package.binary in hashed and package.binary.stat().st_ino == inode

    def test_tampered_binary_is_unpacked_again(self, offline_dir: Path, cache_dir: Path) -> None:
        tarball = build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)["amd64"]
        binary = cache_dir / VERSION / "amd64" / "keadm"
        prepare_offline(offline_dir, cache_dir, ["amd64"])
        binary.write_bytes(b"#!/bin/sh\necho tampered\n")

        prepare_offline(offline_dir, cache_dir, ["amd64"])

        assert hashlib.sha256(binary.read_bytes()).hexdigest() == keadm_member_digest(tarball)[0]

    def test_new_tarball_replaces_the_binary(self, offline_dir: Path, cache_dir: Path) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)
        first = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]
        tarball = build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE * 2)["amd64"]

        second = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]

        assert second.binary_sha256 == keadm_member_digest(tarball)[0]
        assert second.binary_sha256 != first.binary_sha256


def unzstd(frame: Path) -> bytes:
    return zstandard.ZstdDecompressor().decompress(frame.read_bytes())


class TestZstdFrame:
    def test_frame_holds_the_binary_with_its_checksum(
        self, offline_dir: Path, cache_dir: Path
    ) -> None:
        build_packages(offline_dir, VERSION, ["arm64"], BINARY_SIZE)
        package = prepare_offline(offline_dir, cache_dir, ["arm64"])["arm64"]

        assert unzstd(package.binary_zstd) == package.binary.read_bytes()
        header = zstandard.get_frame_parameters(package.binary_zstd.read_bytes())
        assert header.has_checksum
        assert header.content_size == BINARY_SIZE

    def test_damaged_frame_is_made_again(self, offline_dir: Path, cache_dir: Path) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)
        package = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]
        package.binary_zstd.write_bytes(b"not a frame")

        again = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]

        assert unzstd(again.binary_zstd) == again.binary.read_bytes()

    def test_cache_from_before_the_frame_gets_one(self, offline_dir: Path, cache_dir: Path) -> None:
        build_packages(offline_dir, VERSION, ["amd64"], BINARY_SIZE)
        package = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]
        record = package.binary.with_name("keadm.unpacked.json")
        record.write_text(record.read_text().replace('"zstd_sha256"', '"unknown_field"'))
        package.binary_zstd.unlink()
        inode = package.binary.stat().st_ino

        again = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]

        assert again.binary.stat().st_ino == inode  # the binary itself was not unpacked again
        assert unzstd(again.binary_zstd) == again.binary.read_bytes()


@dataclass(frozen=True)
class Member:
    """One entry of a hand-built tarball."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""


def write_tarball(path: Path, members: Sequence[Member]) -> None:
    """A tar.gz with exactly these members, however unsafe (see write_checksum)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = 0o755
            info.linkname = member.link
            if member.kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(member.data) if info.size else None)


def write_checksum(tarball: Path) -> None:
    """The tarball's sha512 in its checksum file beside it, as a release publishes it."""
    checksum_path(tarball).write_text(hashlib.sha512(tarball.read_bytes()).hexdigest() + "\n")


KEADM = Member(f"{ROOT}/keadm/keadm", data=b"#!/bin/sh\necho keadm\n")
VERSION_FILE = Member(f"{ROOT}/version", data=b"v1.22.0\n")
OUTSIDE = "OUTSIDE"  # replaced by an absolute directory beside the cache in the test

UNSAFE_PACKAGES: dict[str, tuple[list[Member], str]] = {
    "dotdot": (
        [KEADM, Member(f"{ROOT}/../../../escaped", data=b"x")],
        f"member '{ROOT}/../../../escaped' climbs out of the package with '..'",
    ),
    "dotdot-first": (
        [Member("../escaped", data=b"x"), KEADM],
        "member '../escaped' climbs out of the package with '..'",
    ),
    "absolute": (
        [KEADM, Member(f"{OUTSIDE}/escaped", data=b"x")],
        f"member '{OUTSIDE}/escaped' has an absolute path",
    ),
    "symlink-keadm": (
        [Member(f"{ROOT}/keadm/keadm", tarfile.SYMTYPE, link="/etc/passwd"), VERSION_FILE],
        f"member '{ROOT}/keadm/keadm' is a symbolic link to '/etc/passwd'",
    ),
    "symlink-dir": (
        [Member(f"{ROOT}/keadm", tarfile.SYMTYPE, link=OUTSIDE), KEADM],
        f"member '{ROOT}/keadm' is a symbolic link to '{OUTSIDE}'",
    ),
    "hardlink-keadm": (
        [VERSION_FILE, Member(f"{ROOT}/keadm/keadm", tarfile.LNKTYPE, link=f"{ROOT}/version")],
        f"member '{ROOT}/keadm/keadm' is a hard link to '{ROOT}/version'",
    ),
    "char-device": (
        [KEADM, Member(f"{ROOT}/null", tarfile.CHRTYPE)],
        f"member '{ROOT}/null' is a device or fifo",
    ),
    "block-device-keadm": (
        [Member(f"{ROOT}/keadm/keadm", tarfile.BLKTYPE)],
        f"member '{ROOT}/keadm/keadm' is a device or fifo",
    ),
    "fifo": (
        [KEADM, Member(f"{ROOT}/pipe", tarfile.FIFOTYPE)],
        f"member '{ROOT}/pipe' is a device or fifo",
    ),
    "outside-root": (
        [KEADM, Member("keadm-v1.21.0-linux-amd64/keadm/keadm", data=b"other")],
        f"member 'keadm-v1.21.0-linux-amd64/keadm/keadm' lies outside {ROOT}/",
    ),
    "duplicate-keadm": (
        [KEADM, Member(f"{ROOT}/keadm/keadm", data=b"#!/bin/sh\necho second\n")],
        f"{ROOT}/keadm/keadm appears twice",
    ),
    "keadm-missing": (
        [VERSION_FILE],
        f"has no regular file {ROOT}/keadm/keadm",
    ),
    "keadm-is-a-directory": (
        [Member(f"{ROOT}/keadm/keadm", tarfile.DIRTYPE), VERSION_FILE],
        f"has no regular file {ROOT}/keadm/keadm",
    ),
}


class TestUnsafePackages:
    @pytest.mark.parametrize("case", sorted(UNSAFE_PACKAGES))
    def test_refused_whole_and_nothing_written(
        self, case: str, offline_dir: Path, cache_dir: Path, tmp_path: Path
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        members, expected = UNSAFE_PACKAGES[case]
        members = [
            Member(
                m.name.replace(OUTSIDE, str(outside)),
                m.kind,
                m.data,
                m.link.replace(OUTSIDE, str(outside)),
            )
            for m in members
        ]
        tarball = offline_dir / "amd64" / tarball_name(VERSION, "amd64")
        write_tarball(tarball, members)
        write_checksum(tarball)  # a checksum vouches for the bytes, not for what they unpack to
        everything_before = files_under(tmp_path)

        with pytest.raises(PackageError) as failure:
            prepare_offline(offline_dir, cache_dir, ["amd64"])

        message = str(failure.value)
        assert message.startswith("amd64: ")
        assert str(tarball) in message
        assert expected.replace(OUTSIDE, str(outside)) in message
        assert "\n" not in message
        assert files_under(tmp_path) == everything_before, "nothing is written anywhere"
        assert list(outside.iterdir()) == []

    def test_not_a_tarball_is_refused(self, offline_dir: Path, cache_dir: Path) -> None:
        tarball = offline_dir / tarball_name(VERSION, "arm")
        offline_dir.mkdir()
        tarball.write_bytes(b"<html>404 Not Found</html>\n")
        write_checksum(tarball)

        with pytest.raises(PackageError, match=r"^arm: .* is not a readable tar\.gz"):
            prepare_offline(offline_dir, cache_dir, ["arm"])
        assert not (cache_dir / VERSION / "arm" / "keadm").exists()

    def test_dot_slash_names_are_accepted(self, offline_dir: Path, cache_dir: Path) -> None:
        # `tar czf x.tar.gz ./keadm-...` writes "./" prefixes: harmless, and seen in the wild.
        members = [
            Member(f"./{ROOT}/", tarfile.DIRTYPE),
            Member(f"./{KEADM.name}", data=KEADM.data),
        ]
        tarball = offline_dir / "amd64" / tarball_name(VERSION, "amd64")
        write_tarball(tarball, members)
        write_checksum(tarball)

        package = prepare_offline(offline_dir, cache_dir, ["amd64"])["amd64"]

        assert package.binary.read_bytes() == KEADM.data
