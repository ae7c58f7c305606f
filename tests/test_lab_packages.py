"""The lab's package builder: upstream layout, checksum files, a padded keadm that still runs."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.lab.packages import (
    Layout,
    build_packages,
    checksum_path,
    ensure_packages,
    keadm_member_digest,
    keadm_member_digests,
)

VERSION = "v1.22.0"
ARCHES = ("amd64", "arm64", "arm")
SMALL = 1 * 2**20


def _members(tarball: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball, "r:gz") as archive:
        return {member.name: member for member in archive.getmembers()}


@pytest.mark.parametrize(
    ("layout", "relative"),
    [
        ("arch", "{arch}/keadm-v1.22.0-linux-{arch}.tar.gz"),
        ("flat", "keadm-v1.22.0-linux-{arch}.tar.gz"),
    ],
)
def test_layout_places_tarballs(tmp_path: Path, layout: Layout, relative: str) -> None:
    packages = build_packages(tmp_path, binary_size=SMALL, layout=layout)

    assert sorted(packages) == sorted(ARCHES)
    for arch, tarball in packages.items():
        assert tarball == tmp_path / relative.format(arch=arch)
        assert tarball.is_file()
        checksum = tarball.with_name(f"checksum_keadm-v1.22.0-linux-{arch}.tar.gz.txt")
        assert checksum.is_file()
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.tar.gz"))
    assert files == sorted(relative.format(arch=arch) for arch in ARCHES)


def test_tarball_members_follow_upstream_layout(tmp_path: Path) -> None:
    tarball = build_packages(tmp_path, arches=("arm64",), binary_size=SMALL)["arm64"]

    members = _members(tarball)
    root = "keadm-v1.22.0-linux-arm64"
    assert set(members) == {root, f"{root}/keadm", f"{root}/keadm/keadm", f"{root}/version"}
    keadm = members[f"{root}/keadm/keadm"]
    assert keadm.isfile()
    assert stat.S_IMODE(keadm.mode) == 0o755
    assert keadm.size == SMALL
    with tarfile.open(tarball, "r:gz") as archive:
        version = archive.extractfile(f"{root}/version")
        assert version is not None
        assert version.read() == b"v1.22.0\n"


def test_checksum_file_is_sha512_of_tarball(tmp_path: Path) -> None:
    packages = build_packages(tmp_path, binary_size=SMALL)

    for tarball in packages.values():
        expected = hashlib.sha512(tarball.read_bytes()).hexdigest()
        assert checksum_path(tarball).read_text() == expected + "\n"


def test_padded_binary_runs_version_and_join(tmp_path: Path) -> None:
    tarball = build_packages(tmp_path / "out", arches=("arm",), binary_size=2 * SMALL)["arm"]
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    keadm_dir = tmp_path / "unpacked" / "keadm-v1.22.0-linux-arm" / "keadm"
    environment = {
        **os.environ,
        "KEADM_FAKE_RECORD_DIR": str(tmp_path / "record"),
        "KEADM_FAKE_ETC_DIR": str(tmp_path / "etc"),
    }

    def keadm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["./keadm", *args],
            cwd=keadm_dir,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    version = keadm("version")
    assert version.returncode == 0, version.stderr
    assert 'GitVersion:"v1.22.0"' in version.stdout
    assert 'Platform:"linux/arm"' in version.stdout
    join = keadm("join", "--cloudcore-ipport=127.0.0.1:10000", "--token=abc")
    assert join.returncode == 0, join.stderr
    assert "edgecore is running" in join.stdout
    record = (tmp_path / "record" / "keadm-join.log").read_text().splitlines()
    assert [line.split("\t")[4:] for line in record] == [
        ["join", "--cloudcore-ipport=127.0.0.1:10000", "--token=abc"]
    ]


def test_default_padding_compresses_like_the_real_binary(tmp_path: Path) -> None:
    binary_size = 16 * 2**20
    tarball = build_packages(tmp_path, arches=("amd64",), binary_size=binary_size)["amd64"]

    ratio = binary_size / tarball.stat().st_size
    assert 2.5 < ratio < 4.5


def test_builds_are_reproducible_and_arches_differ(tmp_path: Path) -> None:
    first = build_packages(tmp_path / "first", binary_size=SMALL)
    second = build_packages(tmp_path / "second", binary_size=SMALL)

    for arch in ARCHES:
        assert first[arch].read_bytes() == second[arch].read_bytes()
    digests = keadm_member_digests(first)
    assert len({digest for digest, _ in digests.values()}) == len(ARCHES)
    assert {size for _, size in digests.values()} == {SMALL}


def test_member_digest_is_sha256_of_the_unpacked_binary(tmp_path: Path) -> None:
    tarball = build_packages(tmp_path, arches=("amd64",), binary_size=SMALL)["amd64"]
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    binary = (tmp_path / "unpacked" / "keadm-v1.22.0-linux-amd64" / "keadm" / "keadm").read_bytes()

    assert keadm_member_digest(tarball) == (hashlib.sha256(binary).hexdigest(), len(binary))


def test_ensure_packages_reuses_a_matching_build_only(tmp_path: Path) -> None:
    first = ensure_packages(tmp_path, binary_size=SMALL)
    built = {arch: path.stat().st_mtime_ns for arch, path in first.items()}

    again = ensure_packages(tmp_path, binary_size=SMALL)
    assert again == first
    assert {arch: path.stat().st_mtime_ns for arch, path in again.items()} == built

    bigger = ensure_packages(tmp_path, binary_size=2 * SMALL)
    assert {size for _, size in keadm_member_digests(bigger).values()} == {2 * SMALL}


def test_binary_smaller_than_the_script_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smaller than the script"):
        build_packages(tmp_path, binary_size=100)


def test_cli_builds_packages(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab", "packages", str(tmp_path), "--size-mb", "1"],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    for arch in ARCHES:
        tarball = tmp_path / arch / f"keadm-{VERSION}-linux-{arch}.tar.gz"
        assert str(tarball) in result.stdout
        assert keadm_member_digest(tarball)[1] == SMALL
