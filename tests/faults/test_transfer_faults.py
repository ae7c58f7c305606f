"""Faults staging and uploading: a full /tmp, sshd killed mid-upload, a planted staging dir."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.batch_configs import offline_dir_of
from tests.faults.conftest import STAGING, FaultLab, kill_node_sshd
from tests.lab import ensure_packages
from tests.lab.packages import keadm_member_digest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

FAULTY = "node-001"
BIG_BINARY_SIZE = 64 * 2**20
# The zstd frame of keadm as it arrives (notes.part_path: named by its sha256 and form); it is
# unpacked once whole, so its growing is the upload under way.
PART_GLOB = "keadm.????????????????.zst.kenornir-part"


@pytest.fixture(scope="module")
def big_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64 MiB amd64 keadm: an upload long enough to be cut in the middle."""
    return ensure_packages(
        tmp_path_factory.mktemp("big-packages"), arches=("amd64",), binary_size=BIG_BINARY_SIZE
    )


def remote_files(faults: FaultLab, node: str, pattern: str) -> list[str]:
    listed = faults.lab.exec(node, f"ls -1d {pattern} 2>/dev/null || true")
    return listed.stdout.split()


def remote_sha256(faults: FaultLab, node: str, path: str) -> str:
    return faults.lab.exec(node, f"sha256sum {path}").stdout.split()[0]


def test_full_tmp_fails_the_upload_and_leaves_no_partial_file(fault_lab: FaultLab) -> None:
    tiny = fault_lab.lab.add_node(tmp_size_mb=2).name  # the 4 MiB keadm cannot fit
    config = fault_lab.config([fault_lab.entry(tiny), *fault_lab.healthy()])

    run = fault_lab.run(config, "tmp-full")

    record = run.record(tiny)
    assert (record["status"], record["stage"]) == ("failed", "upload"), record
    assert f"{STAGING}/keadm" in record["reason"]
    assert "space" in record["reason"], record
    assert remote_files(fault_lab, tiny, f"{STAGING}/keadm*") == []
    assert run.exit_code == 1
    fault_lab.assert_healthy_ok(run)


def kill_sshd_when_the_upload_is_under_way(faults: FaultLab, node: str) -> threading.Thread:
    """In the background: once node's part file holds a few MiB, kill its sshd and sessions."""
    part = f"{STAGING}/{PART_GLOB}"
    return faults.lab.when_file_grows(
        node, part, 4 * 2**20, lambda: kill_node_sshd(faults.lab, node)
    )


@pytest.mark.timeout(150)
def test_sshd_killed_mid_upload_fails_the_node_and_the_next_run_completes(
    fault_lab: FaultLab, big_packages: dict[str, Path]
) -> None:
    fault_lab.offline_dir = offline_dir_of(big_packages)
    config = fault_lab.config(
        [fault_lab.entry(FAULTY), *fault_lab.healthy()], arch_group=("amd64",)
    )
    watcher = kill_sshd_when_the_upload_is_under_way(fault_lab, FAULTY)
    try:  # no retries: the next run is what resumes here (the retry has tests of its own)
        cut = fault_lab.run(config, "cut", "--retries", "0")
    finally:
        watcher.join()

    record = cut.record(FAULTY)
    assert (record["status"], record["stage"]) == ("failed", "upload"), record
    assert "SSH connection lost" in record["reason"], record
    assert remote_files(fault_lab, FAULTY, f"{STAGING}/keadm") == []
    fault_lab.assert_healthy_ok(cut)

    fault_lab.lab.start_sshd(FAULTY)
    again = fault_lab.run(config, "again", "--limit", FAULTY)

    assert again.statuses()[FAULTY] == "ok"
    assert "resumed at " in again.node_log(FAULTY)
    assert remote_files(fault_lab, FAULTY, f"{STAGING}/keadm*") == [f"{STAGING}/keadm"]
    digest, _ = keadm_member_digest(big_packages["amd64"])
    assert remote_sha256(fault_lab, FAULTY, f"{STAGING}/keadm") == digest


def staged_state(faults: FaultLab) -> str:
    """Every path under the node's /tmp/kubeedge and /var/lib/kubeedge, links not followed."""
    listing = faults.lab.exec(
        FAULTY, "find /tmp/kubeedge /var/lib/kubeedge -printf '%p %y %u %m %s\\n' 2>&1 || true"
    )
    return listing.stdout


@pytest.mark.parametrize(
    ("planted", "refusal"),
    [
        ("mkdir -p /tmp/kubeedge && chown edge:edge /tmp/kubeedge", "/tmp/kubeedge is owned by"),
        ("ln -s /var/lib/kubeedge /tmp/kubeedge", "/tmp/kubeedge is a symlink"),
        ("mkdir -p -m 0777 /tmp/kubeedge/keadm", "/tmp/kubeedge/keadm is writable by"),
    ],
    ids=["other-owner", "symlink", "world-writable"],
)
def test_staging_dir_another_user_could_tamper_with_is_refused(
    fault_lab: FaultLab, planted: str, refusal: str
) -> None:
    assert fault_lab.lab.exec(FAULTY, planted).returncode == 0
    before = staged_state(fault_lab)
    config = fault_lab.config([fault_lab.entry(FAULTY), *fault_lab.healthy()])

    run = fault_lab.run(config, "planted")

    record = run.record(FAULTY)
    assert (record["status"], record["stage"]) == ("failed", "stage-dir"), record
    assert refusal in record["reason"]
    # Refused before anything was created or written through the planted dir.
    assert staged_state(fault_lab) == before
    assert not fault_lab.lab.join_records(FAULTY)
    fault_lab.assert_healthy_ok(run)


def test_three_hundred_copy_from_files_all_arrive(fault_lab: FaultLab, tmp_path: Path) -> None:
    # More than one command's argv can name: the upload goes in several commands.
    copy_from = tmp_path / "many"
    copy_from.mkdir()
    names = [f"site-config-{number:03d}-{'x' * 40}.env" for number in range(300)]
    for name in names:
        (copy_from / name).write_text(f"{name}\n")
    entry = {**fault_lab.entry(FAULTY), "copyFrom": str(copy_from)}
    config = fault_lab.config([entry, *fault_lab.healthy()])

    run = fault_lab.run(config, "many-files")

    assert run.statuses()[FAULTY] == "ok", run.record(FAULTY)
    listed = fault_lab.lab.exec(FAULTY, f"cd {STAGING} && cat site-config-*").stdout
    assert listed.splitlines() == names
    fault_lab.assert_healthy_ok(run)
