"""The controller's package trust: a private cache, checksums required, URL credentials masked.

Whoever can write the package cache (or a parent of it) could plant a keadm and a matching
unpack record; an offline tarball without its checksum file would go to the nodes unverified;
a download URL's `user:password@` would show up in errors and logs. The pure tests call
prepare_packages; the lab tests run the CLI against real sshd nodes and check that a refused
cache touches no node.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import yaml

from kenornir.packages import (
    KeadmPackage,
    PackageError,
    checksum_name,
    prepare_packages,
    tarball_name,
)
from tests.batch_configs import LAB_TOKEN, write_config
from tests.faults.conftest import JOIN_CMD, FaultLab, FaultRun, leaked_secrets
from tests.http_server import LocalHTTPServer
from tests.lab.inventory import batch_config, node_entry
from tests.lab.packages import build_packages

VERSION = "v1.22.0"
ARCH = "amd64"
NODE = "node-001"
NOBODY = 65534
BINARY_SIZE = 64 * 1024
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report.schema.json").read_text())
# A password with characters a URL must percent-encode: neither spelling may be shown.
MIRROR_USER = "mirror-user"
MIRROR_PASSWORD = "Mirr0r-p@ss:w0rd"
MIRROR_SECRETS = (MIRROR_PASSWORD, quote(MIRROR_PASSWORD, safe=""))
QUICK_RETRIES: dict[str, Any] = {"timeouts": (5.0, 5.0), "retries": 2, "backoff": 0.01}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def prepare_offline(offline_dir: Path, cache_dir: Path) -> dict[str, KeadmPackage]:
    return prepare_packages(
        VERSION, [ARCH], download=False, base_url=None, offline_dir=offline_dir, cache_dir=cache_dir
    )


@pytest.fixture
def offline_dir(tmp_path: Path) -> Path:
    build_packages(tmp_path / "offline", VERSION, [ARCH], BINARY_SIZE)
    return tmp_path / "offline"


# Ways another user could get at a cache: each plants the fault under `base` (the cache is
# base/cache) and returns the dir the refusal must name and a phrase of what is wrong with it.
Unsafe = Callable[[Path], tuple[Path, str]]


def writable_by_others(base: Path) -> tuple[Path, str]:
    (base / "cache").mkdir(mode=0o700)
    (base / "cache").chmod(0o777)
    return base / "cache", "is writable by group and others (mode 0777)"


def writable_by_group(base: Path) -> tuple[Path, str]:
    (base / "cache").mkdir(mode=0o700)
    (base / "cache").chmod(0o770)
    return base / "cache", "is writable by group (mode 0770)"


def owned_by_another_user(base: Path) -> tuple[Path, str]:
    (base / "cache").mkdir(mode=0o700)
    os.chown(base / "cache", NOBODY, NOBODY)
    return base / "cache", f"uid {NOBODY}), not by you or root"


def parent_writable_without_sticky_bit(base: Path) -> tuple[Path, str]:
    base.chmod(0o777)
    return base, "is writable by group and others (mode 0777, not sticky)"


def sticky_parent_with_another_users_entry(base: Path) -> tuple[Path, str]:
    base.chmod(0o1777)
    (base / "cache").mkdir(mode=0o700)
    os.chown(base / "cache", NOBODY, NOBODY)
    return base / "cache", f"uid {NOBODY}), not by you or root"


def version_dir_writable_by_others(base: Path) -> tuple[Path, str]:
    (base / "cache" / VERSION).mkdir(parents=True)
    (base / "cache" / VERSION).chmod(0o757)
    return base / "cache" / VERSION, "is writable by others (mode 0757)"


def arch_dir_owned_by_another_user(base: Path) -> tuple[Path, str]:
    (base / "cache" / VERSION / ARCH).mkdir(parents=True)
    os.chown(base / "cache" / VERSION / ARCH, NOBODY, NOBODY)
    return base / "cache" / VERSION / ARCH, f"uid {NOBODY}), not by you or root"


def version_dir_is_a_symlink(base: Path) -> tuple[Path, str]:
    elsewhere = base / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (base / "cache").mkdir(mode=0o700)
    (base / "cache" / VERSION).symlink_to(elsewhere)
    return base / "cache" / VERSION, "is a symbolic link"


UNSAFE_CACHES: dict[str, Unsafe] = {
    "writable-by-others": writable_by_others,
    "writable-by-group": writable_by_group,
    "owned-by-another-user": owned_by_another_user,
    "parent-writable-without-sticky-bit": parent_writable_without_sticky_bit,
    "sticky-parent-with-another-users-entry": sticky_parent_with_another_users_entry,
    "version-dir-writable-by-others": version_dir_writable_by_others,
    "arch-dir-owned-by-another-user": arch_dir_owned_by_another_user,
    "version-dir-is-a-symlink": version_dir_is_a_symlink,
}
# What the CLI tests plant (the brief's cases); the pure tests try them all.
CLI_UNSAFE_CACHES = (
    "writable-by-others",
    "writable-by-group",
    "owned-by-another-user",
    "parent-writable-without-sticky-bit",
)


def unsafe_cache(case: str, base: Path) -> tuple[Path, Path, str]:
    """(cache root, dir the refusal names, what is wrong with it) for one UNSAFE_CACHES case."""
    if "another-user" in case and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    base.mkdir(mode=0o700)
    named, problem = UNSAFE_CACHES[case](base)
    return base / "cache", named, problem


class TestPrivateCache:
    @pytest.mark.parametrize("case", sorted(UNSAFE_CACHES))
    def test_a_cache_another_user_could_write_is_refused(
        self, case: str, offline_dir: Path, tmp_path: Path
    ) -> None:
        cache, named, problem = unsafe_cache(case, tmp_path / "base")

        with pytest.raises(PackageError) as failure:
            prepare_offline(offline_dir, cache)

        message = str(failure.value)
        assert message.startswith(f"unsafe keadm cache {cache}: {named} "), message
        assert problem in message and "\n" not in message
        assert "chmod go-w" in message or "another --cache-dir" in message or "remove" in message
        assert not (cache / VERSION / ARCH / "keadm").exists(), "nothing was unpacked"

    def test_missing_cache_dir_and_its_missing_parents_are_made_0700(
        self, offline_dir: Path, tmp_path: Path
    ) -> None:
        cache = tmp_path / "made" / "for" / "cache"

        prepare_offline(offline_dir, cache)

        made = (tmp_path / "made", tmp_path / "made" / "for", cache, cache / VERSION)
        modes = {str(path): oct(mode_of(path)) for path in (*made, cache / VERSION / ARCH)}
        assert modes == dict.fromkeys(modes, "0o700")

    def test_a_sticky_world_writable_parent_holding_our_cache_is_fine(
        self, offline_dir: Path, tmp_path: Path
    ) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o1777)  # like /tmp

        prepare_offline(offline_dir, shared / "cache")

        assert mode_of(shared / "cache") == 0o700
        assert (shared / "cache" / VERSION / ARCH / "keadm").is_file()

    def test_a_symlinked_cache_root_is_checked_and_used_as_its_real_path(
        self, offline_dir: Path, tmp_path: Path
    ) -> None:
        open_parent = tmp_path / "open"
        open_parent.mkdir()
        open_parent.chmod(0o777)
        (open_parent / "cache").mkdir(mode=0o700)
        link = tmp_path / "cache-link"
        link.symlink_to(open_parent / "cache")

        with pytest.raises(PackageError, match=f"{open_parent} is writable by group and others"):
            prepare_offline(offline_dir, link)

        open_parent.chmod(0o755)
        packages = prepare_offline(offline_dir, link)
        assert packages[ARCH].binary == open_parent / "cache" / VERSION / ARCH / "keadm"


# URL credentials: every way a download can fail or warn, against a real HTTP server.


@dataclass
class Mirror:
    server: LocalHTTPServer
    cache_dir: Path

    def url(self, host: str = "") -> str:
        user_info = f"{MIRROR_USER}:{quote(MIRROR_PASSWORD, safe='')}"
        return f"http://{user_info}@{host or self.server.url.removeprefix('http://')}/{VERSION}"

    def path(self, name: str) -> str:
        return f"/{VERSION}/{name}"


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    build_packages(tmp_path / "www" / VERSION, VERSION, [ARCH], BINARY_SIZE, "flat")
    with LocalHTTPServer(tmp_path / "www") as server:
        yield Mirror(server, tmp_path / "cache")


TARBALL = tarball_name(VERSION, ARCH)
CHECKSUM = checksum_name(VERSION, ARCH)
# name: (set the fault up, prepare with checksum verification on, expected to fail)
DOWNLOAD_FAULTS: dict[str, tuple[Callable[[Mirror], None], bool, bool]] = {
    "checksum-404": (lambda m: m.server.fail_with(m.path(CHECKSUM), 404), True, True),
    "checksum-404-unverified": (lambda m: m.server.fail_with(m.path(CHECKSUM), 404), False, False),
    "tarball-404": (lambda m: m.server.fail_with(m.path(TARBALL), 404), True, True),
    "tarball-403": (lambda m: m.server.fail_with(m.path(TARBALL), 403), True, True),
    "tarball-500-retried-then-ok": (
        lambda m: m.server.fail_with(m.path(TARBALL), 500, times=1),
        True,
        False,
    ),
    "tarball-500-every-retry": (lambda m: m.server.fail_with(m.path(TARBALL), 500), True, True),
    "tarball-corrupt": (lambda m: m.server.corrupt(m.path(TARBALL)), True, True),
}


class TestDownloadCredentials:
    @pytest.mark.parametrize("fault", sorted(DOWNLOAD_FAULTS))
    def test_never_in_an_error_or_a_log_line(
        self, fault: str, mirror: Mirror, caplog: pytest.LogCaptureFixture
    ) -> None:
        plant, verify, fails = DOWNLOAD_FAULTS[fault]
        plant(mirror)
        shown: list[str] = []

        with caplog.at_level(logging.DEBUG, logger="kenornir"):
            try:
                prepare_packages(
                    VERSION,
                    [ARCH],
                    download=True,
                    base_url=mirror.url(),
                    offline_dir=None,
                    cache_dir=mirror.cache_dir,
                    verify_checksum=verify,
                    **QUICK_RETRIES,
                )
            except PackageError as exc:
                shown.append(str(exc))

        assert bool(shown) == fails, shown
        shown += [record.getMessage() for record in caplog.records]
        assert not leaked_secrets(MIRROR_SECRETS, {str(i): text for i, text in enumerate(shown)})
        # Shown masked, not left out: the user still sees which mirror and which user.
        assert any(f"http://{MIRROR_USER}:***@127.0.0.1:" in text for text in shown), shown

    def test_never_in_the_text_of_requests_own_errors(self, mirror: Mirror) -> None:
        # requests refuses this port, quoting the whole URL in its message.
        with pytest.raises(PackageError) as failure:
            prepare_packages(
                VERSION,
                [ARCH],
                download=True,
                base_url=mirror.url("127.0.0.1:99999"),
                offline_dir=None,
                cache_dir=mirror.cache_dir,
                **QUICK_RETRIES,
            )

        message = str(failure.value)
        assert not leaked_secrets(MIRROR_SECRETS, {"error": message}), message
        assert f"{MIRROR_USER}:***@127.0.0.1:99999" in message


# The CLI: `kenornir prepare` (no node involved) and runs against the lab.


def kenornir_prepare(
    config: Path, cwd: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kenornir", "prepare", str(config), *map(str, args)],
        cwd=cwd,
        env=env or {**os.environ, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_no_node_touched(faults: FaultLab, run: FaultRun) -> None:
    assert run.exit_code == 3, run.stderr
    assert faults.lab.exec(NODE, "test -e /tmp/kubeedge").returncode != 0, "a node was touched"
    assert not faults.lab.join_records(NODE)
    assert set(run.statuses().values()) == {"skipped"}, run.statuses()
    assert run.report["packages"] == {}
    jsonschema.validate(run.report, SCHEMA)


def refusal_line(stderr: str) -> str:
    """The one line that says why, from prepare's stderr or a run's (which adds where the
    report is)."""
    why, *rest = stderr.splitlines()
    assert why.startswith("kenornir: preparing keadm packages failed: "), stderr
    assert rest == [] or (len(rest) == 1 and rest[0].startswith("no node was touched; ")), stderr
    return why


@pytest.mark.lab
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CLI_UNSAFE_CACHES)
def test_an_unsafe_cache_dir_stops_run_and_prepare_before_any_node(
    case: str, fault_lab: FaultLab
) -> None:
    cache, named, problem = unsafe_cache(case, fault_lab.workdir / "base")
    config = fault_lab.config([fault_lab.entry(NODE)])

    run = fault_lab.run(config, case, "--cache-dir", str(cache))

    assert_no_node_touched(fault_lab, run)
    assert f"unsafe keadm cache {cache}: {named} " in refusal_line(run.stderr)
    assert problem in run.stderr
    prepared = kenornir_prepare(config, fault_lab.workdir, "--cache-dir", cache)
    assert prepared.returncode == 3, prepared.stderr
    assert refusal_line(prepared.stderr) == refusal_line(run.stderr)
    assert not (cache / VERSION).exists(), "nothing was made inside the unsafe cache"


def test_prepare_makes_the_default_cache_0700(
    lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "batch.yaml"
    entry = node_entry(NODE, "127.0.0.1", 22, cmd=JOIN_CMD, password="pw")
    offline = next(iter(lab_packages.values())).parent.parent
    document = batch_config(
        [entry], offline, cmd_tpl_args={"cmd": "join", "token": LAB_TOKEN}, arch_group=[ARCH]
    )
    config.write_text(yaml.safe_dump(document))
    config.chmod(0o600)
    env = {key: value for key, value in os.environ.items() if key != "XDG_CACHE_HOME"}

    prepared = kenornir_prepare(config, tmp_path, env={**env, "HOME": str(tmp_path)})

    assert prepared.returncode == 0, prepared.stderr
    made = tmp_path / ".cache" / "kenornir" / "keadm" / VERSION / ARCH
    # .cache, kenornir, keadm, the version and the arch: all made here, all private.
    modes = {str(path): oct(mode_of(path)) for path in (made, *made.parents[:4])}
    assert modes == dict.fromkeys(modes, "0o700"), modes


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_offline_tarball_without_checksum_needs_the_insecure_flag(
    fault_lab: FaultLab, lab_packages: dict[str, Path]
) -> None:
    offline = fault_lab.workdir / "offline"
    tarball = offline / ARCH / lab_packages[ARCH].name
    tarball.parent.mkdir(parents=True)
    shutil.copy(lab_packages[ARCH], tarball)  # and not its checksum file
    bare = write_config(
        fault_lab.workdir / "bare.yaml", [fault_lab.entry(NODE)], offline, arch_group=[ARCH]
    )

    refused = fault_lab.run(bare, "refused")

    assert_no_node_touched(fault_lab, refused)
    line = refusal_line(refused.stderr)
    assert f"{tarball} has no checksum file {tarball.parent / CHECKSUM}" in line
    assert "--insecure-skip-checksum" in line

    insecure = fault_lab.run(bare, "insecure", "--insecure-skip-checksum")

    assert insecure.exit_code == 0, insecure.stderr
    assert insecure.record(NODE)["status"] == "ok"
    assert insecure.report["packages"] == {
        ARCH: {"version": VERSION, "source": "offline", "sha512_verified": False}
    }
    jsonschema.validate(insecure.report, SCHEMA)


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_a_verified_offline_package_is_reported_as_such(fault_lab: FaultLab) -> None:
    config = fault_lab.config([fault_lab.entry(NODE)], arch_group=[ARCH, "arm64"])

    run = fault_lab.run(config, "verified")

    assert run.exit_code == 0, run.stderr
    verified = {"version": VERSION, "source": "offline", "sha512_verified": True}
    assert run.report["packages"] == {ARCH: verified, "arm64": verified}
    jsonschema.validate(run.report, SCHEMA)


def download_config(faults: FaultLab, url: str) -> Path:
    document = batch_config(
        [faults.entry(NODE)], faults.offline_dir, cmd_tpl_args={"token": LAB_TOKEN, "cmd": "join"}
    )
    document["keadm"].update(download={"enable": True, "url": url}, archGroup=[ARCH])
    del document["keadm"]["offlinePackageDir"]
    path = faults.workdir / "download.yaml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_download_url_credentials_reach_no_output(fault_lab: FaultLab, mirror: Mirror) -> None:
    fault_lab.secrets += MIRROR_SECRETS  # every run below is searched for them
    config = download_config(fault_lab, mirror.url())
    mirror.server.fail_with(mirror.path(TARBALL), 404)

    missing = fault_lab.run(config, "tarball-404")

    assert_no_node_touched(fault_lab, missing)
    assert f"http://{MIRROR_USER}:***@127.0.0.1:" in refusal_line(missing.stderr)
    prepared = kenornir_prepare(config, fault_lab.workdir)
    assert prepared.returncode == 3
    assert not leaked_secrets(
        MIRROR_SECRETS, {"stdout": prepared.stdout, "stderr": prepared.stderr}
    )

    mirror.server.fail_with(mirror.path(TARBALL), 500, times=1)  # one retry, then served

    retried = fault_lab.run(config, "tarball-500-once")

    assert retried.exit_code == 0, retried.stderr
    assert f"http://{MIRROR_USER}:***@127.0.0.1:" in retried.run_log
    assert retried.report["packages"] == {
        ARCH: {"version": VERSION, "source": "download", "sha512_verified": True}
    }
