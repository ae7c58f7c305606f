"""The batch end to end on the lab: upstream's join config, failures, reruns, concurrency."""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from kenornir.batch import BatchRun, RunOptions, Selection, run_batch
from kenornir.outcome import Status
from kenornir.report import summary_table
from tests.batch_configs import (
    EXTRA_FILE,
    LAB_TOKEN,
    copy_from_dir,
    node_entry,
    offline_dir_of,
    write_config,
)
from tests.lab import Lab
from tests.lab.packages import keadm_member_digests

pytestmark = pytest.mark.lab

STAGING = "/tmp/kubeedge/keadm"
PASSWORD_NODES = {"node-002", "node-007"}
SUDO_NODE = "node-005"


def run(config: Path, tmp_path: Path, name: str, selection: Selection | None = None) -> BatchRun:
    options = RunOptions(
        known_hosts=tmp_path / "known_hosts",
        cache_dir=tmp_path / "cache",
        run_dir=tmp_path / "runs" / name,
    )
    return run_batch(config, selection or Selection(), options, stream=io.StringIO())


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def join_count(lab: Lab) -> dict[str, int]:
    return {node.name: len(lab.join_records(node.name)) for node in lab.nodes}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def upstream_config(lab: Lab, lab_packages: dict[str, Path], workdir: Path) -> Path:
    """The upstream docs' join config on all 12 lab nodes: key and password logins, one node
    through the non-root sudo user, maxRunNum 3, keadm sleeping so the limit is observable."""
    copy_from = copy_from_dir(workdir)
    nodes = []
    for node in lab.nodes:
        cmd = "{{.cmd}} --edgenode-name={{nodeName}} --token={{.token}} "
        cmd += "--pre-run=./install-containerd.sh --fake-sleep=0.4"
        nodes.append(
            node_entry(
                lab,
                node.name,
                cmd=cmd,
                copy_from=copy_from,
                auth="password" if node.name in PASSWORD_NODES else "privateKey",
                user=lab.edge_user if node.name == SUDO_NODE else "root",
            )
        )
    return write_config(
        workdir / "upstream.yaml", nodes, offline_dir_of(lab_packages), max_run_num=3
    )


@pytest.fixture(scope="module")
def first_run(upstream_config: Path, workdir: Path, lab: Lab) -> BatchRun:
    for node in lab.nodes:  # a clean slate: nothing staged, nothing joined
        lab.exec(node.name, "rm -rf /tmp/kubeedge /var/lib/kubeedge/*")
    lab.forget_joins()  # this module-scoped run starts before the per-test autouse unjoin
    return run(upstream_config, workdir, "first")


def test_upstream_join_config_succeeds_on_every_node(first_run: BatchRun, lab: Lab) -> None:
    assert first_run.exit_code == 0, summary_table(first_run.outcomes, first_run.run_dir)
    assert {o.status for o in first_run.outcomes} == {Status.OK}
    assert {o.arch for o in first_run.outcomes} == {"amd64", "arm64", "arm"}


def test_every_node_got_its_arch_binary_and_the_copy_from_files(
    first_run: BatchRun, lab: Lab, lab_packages: dict[str, Path]
) -> None:
    digests = keadm_member_digests(lab_packages)
    for node in lab.nodes:
        files = f"{STAGING}/keadm {STAGING}/install-containerd.sh {STAGING}/{EXTRA_FILE}"
        listing = lab.exec(node.name, f"sha256sum {STAGING}/keadm; stat -c '%a %n' {files}")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].split()[0] == digests[node.goarch][0], node.name
        assert [line.split()[0] for line in lines[1:]] == ["755", "755", "755"], node.name


def test_fake_keadm_recorded_the_rendered_command_after_the_pre_run(
    first_run: BatchRun, lab: Lab
) -> None:
    for node in lab.nodes:
        (record,) = lab.join_records(node.name)
        assert record.argv == (
            "join",
            f"--edgenode-name={node.name}",
            f"--token={LAB_TOKEN}",
            "--pre-run=./install-containerd.sh",
            "--fake-sleep=0.4",
        )
        assert record.cwd == STAGING
        pre_run_mark = float(lab.exec(node.name, "cat /var/lib/kubeedge/pre-run-mark").stdout)
        assert record.start <= pre_run_mark <= record.end


def test_no_more_than_max_run_num_nodes_at_once(first_run: BatchRun, lab: Lab) -> None:
    intervals = [(r.start, r.end) for n in lab.nodes for r in lab.join_records(n.name)]
    assert len(intervals) == 12
    # keadm sleeps 0.4 s on each of 12 nodes, so a run over the limit would overlap more than 3.
    # How many did overlap depends on timing (a loaded machine may serialize them): no lower bound.
    assert max_overlap(intervals) <= 3


def test_sudo_node_ran_keadm_as_root_from_a_dir_only_root_may_write(
    first_run: BatchRun, lab: Lab
) -> None:
    owner = lab.exec(
        SUDO_NODE,
        "stat -c '%U %a' /var/lib/kubeedge/keadm-join.log /tmp/kubeedge /tmp/kubeedge/keadm "
        "/tmp/kubeedge/keadm/keadm",
    )
    assert owner.stdout.splitlines() == ["root 644", "root 755", "root 755", "root 755"]


def test_second_run_uploads_nothing_and_still_runs_keadm(
    first_run: BatchRun, upstream_config: Path, workdir: Path, lab: Lab
) -> None:
    before = join_count(lab)
    again = run(upstream_config, workdir, "second")
    assert again.exit_code == 0
    assert [o.changed for o in again.outcomes] == [[] for _ in again.outcomes]
    assert join_count(lab) == {name: count + 1 for name, count in before.items()}
    log = (again.run_dir / "node-001.log").read_text()
    assert "unchanged: /tmp/kubeedge/keadm/keadm" in log


def test_nodes_with_zstd_get_keadm_as_a_zstd_frame(first_run: BatchRun) -> None:
    log = (first_run.run_dir / "node-001.log").read_text()
    assert "packed: keadm.zst unpacked on the node" in log


def test_a_node_without_zstd_unpacks_the_release_tarball(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    node = lab.nodes[-1]
    # `false` over zstd: the node has a zstd that does not work.
    hidden = lab.exec(node.name, 'mount --bind /bin/false "$(command -v zstd)"')
    assert hidden.returncode == 0, f"the lab host needs zstd (make deps): {hidden.stderr}"
    try:
        lab.exec(node.name, "rm -rf /tmp/kubeedge")
        config = write_config(
            tmp_path / "no-zstd.yaml",
            [node_entry(lab, node.name, cmd="{{.cmd}} --token={{.token}}")],
            offline_dir_of(lab_packages),
        )
        result = run(config, tmp_path, "no-zstd")
    finally:
        lab.exec(node.name, 'umount "$(command -v zstd)"')
    assert result.exit_code == 0, summary_table(result.outcomes, result.run_dir)
    log = (result.run_dir / f"{node.name}.log").read_text()
    assert f"packed: {lab_packages[node.goarch].name} unpacked on the node" in log
    staged = lab.exec(node.name, f"sha256sum {STAGING}/keadm").stdout.split()
    assert staged[0] == keadm_member_digests(lab_packages)[node.goarch][0]


@pytest.fixture(scope="module")
def failing_run(lab: Lab, lab_packages: dict[str, Path], workdir: Path) -> tuple[Path, BatchRun]:
    """The 8 lab nodes without arm (one with an invalid token), an arm node whose arch is not
    prepared, and an address where nothing listens."""
    for node in lab.nodes:  # the sudo node's staging dir belongs to its user; root logs in here
        lab.exec(node.name, "rm -rf /tmp/kubeedge")
    not_arm = [n.name for n in lab.nodes if n.goarch != "arm"]
    arm = next(n.name for n in lab.nodes if n.goarch == "arm")
    bad_token = "{{.cmd}} --edgenode-name={{nodeName}} --token=invalid"
    nodes = [node_entry(lab, name, cmd="{{.cmd}} --token={{.token}}") for name in not_arm[1:]]
    nodes.append(node_entry(lab, not_arm[0], cmd=bad_token))
    nodes.append(node_entry(lab, arm))
    # The last address of the lab's subnet: loopback, and no lab node listens there.
    nobody = f"{lab.subnet}.254"
    nodes.append(node_entry(lab, "node-gone", address=nobody))
    config = write_config(
        workdir / "failing.yaml", nodes, offline_dir_of(lab_packages), arch_group=("amd64", "arm64")
    )
    return config, run(config, workdir, "failing")


def test_three_failures_are_named_and_the_rest_succeed(
    failing_run: tuple[Path, BatchRun], lab: Lab
) -> None:
    _, result = failing_run
    assert result.exit_code == 1
    bad = {o.node: o for o in result.outcomes if o.status is not Status.OK}
    first_amd = next(n.name for n in lab.nodes if n.goarch != "arm")
    arm = next(n.name for n in lab.nodes if n.goarch == "arm")
    assert set(bad) == {first_amd, arm, "node-gone"}
    assert (bad[first_amd].status, bad[first_amd].stage) == (Status.FAILED, "keadm")
    assert bad[first_amd].exit_code == 1
    assert (bad[arm].status, bad[arm].stage) == (Status.FAILED, "arch")
    assert "add arm to keadm.archGroup" in (bad[arm].reason or "")
    assert (bad["node-gone"].status, bad["node-gone"].stage) == (Status.UNREACHABLE, "connect")
    assert len(result.outcomes) - len(bad) == 7
    table = summary_table(result.outcomes, result.run_dir)
    for outcome in bad.values():
        row = next(line for line in table.splitlines() if line.startswith(outcome.node + " "))
        assert str(outcome.stage) in row
        assert (outcome.reason or "")[:30] in row


def test_rerun_failed_touches_only_the_failed_nodes(
    failing_run: tuple[Path, BatchRun], workdir: Path, lab: Lab
) -> None:
    config, failed = failing_run
    before = join_count(lab)
    rerun = run(config, workdir, "rerun", Selection(rerun_failed=failed.run_dir))
    assert sorted(rerun.report["selection"]["nodes"]) == sorted(
        o.node for o in failed.outcomes if o.status is not Status.OK
    )
    after = join_count(lab)
    first_amd = next(n.name for n in lab.nodes if n.goarch != "arm")
    # Only the invalid-token node reaches keadm again; every other lab node is untouched.
    assert after == {**before, first_amd: before[first_amd] + 1}
    assert rerun.exit_code == 1


def test_ten_thousand_stderr_lines_do_not_stall_the_run(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    name = lab.nodes[0].name
    cmd = "{{.cmd}} --token={{.token}} --fake-stderr-lines=10000"
    config = write_config(
        tmp_path / "chatty.yaml", [node_entry(lab, name, cmd=cmd)], offline_dir_of(lab_packages)
    )
    result = run(config, tmp_path, "chatty")
    assert result.exit_code == 0
    log = (result.run_dir / f"{name}.log").read_text()
    assert log.count("stderr: ") >= 10000
    assert shlex.quote(LAB_TOKEN) not in log and LAB_TOKEN not in log
