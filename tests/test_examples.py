"""The scripts in examples/ run as a user would run them, against the lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kenornir.batch import RunOptions, Selection, run_batch
from tests.batch_configs import node_entry, offline_dir_of, run_python, write_config
from tests.lab import Lab

pytestmark = pytest.mark.lab

EXAMPLES = Path(__file__).parent.parent / "examples"


def example(name: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_python([EXAMPLES / name, *args], cwd)


@pytest.fixture
def labeled_config(lab: Lab, lab_packages: dict[str, Path], tmp_path: Path) -> Path:
    """Three lab nodes: two labelled site=north, the second of which fails (bad token)."""
    names = [n.name for n in lab.nodes[:3]]
    nodes = [
        node_entry(
            lab, names[0], cmd="join --token={{.token}}", extra={"labels": {"site": "north"}}
        ),
        node_entry(lab, names[1], cmd="join --token=invalid", extra={"labels": {"site": "north"}}),
        node_entry(
            lab, names[2], cmd="join --token={{.token}}", extra={"labels": {"site": "south"}}
        ),
    ]
    for name in names:
        lab.exec(name, "rm -rf /tmp/kubeedge")
    return write_config(tmp_path / "labeled.yaml", nodes, offline_dir_of(lab_packages))


def test_join_labeled_joins_only_that_label(labeled_config: Path, tmp_path: Path, lab: Lab) -> None:
    before = len(lab.join_records(lab.nodes[2].name))
    result = example("join_labeled.py", labeled_config, "site=north", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    first, second, _ = (n.name for n in lab.nodes[:3])
    assert result.stdout.splitlines()[0] == f"{first}: ok"
    assert result.stdout.splitlines()[1].startswith(f"{second}: failed")
    assert len(result.stdout.splitlines()) == 2
    assert len(lab.join_records(lab.nodes[2].name)) == before


def test_rerun_failed_reruns_the_failed_node_only(
    labeled_config: Path, tmp_path: Path, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = RunOptions(known_hosts=tmp_path / ".ssh" / "known_hosts", cache_dir=tmp_path / "c")
    monkeypatch.chdir(tmp_path)  # the example reads kenornir-runs/latest relative to where it runs
    first_run = run_batch(labeled_config, Selection(), options, stream=None)
    assert first_run.exit_code == 1
    result = example("rerun_failed.py", labeled_config, cwd=tmp_path)
    assert result.stdout == f"{lab.nodes[1].name}: failed\n", result.stderr
    assert result.returncode == 1


def test_reset_then_join(labeled_config: Path, tmp_path: Path, lab: Lab) -> None:
    name = lab.nodes[0].name
    never_joined = example("reset_then_join.py", labeled_config, name, cwd=tmp_path)
    assert never_joined.stdout.startswith(f"{name}: reset failed: keadm failed"), never_joined
    assert never_joined.returncode == 1
    options = RunOptions(
        known_hosts=tmp_path / ".ssh" / "known_hosts", cache_dir=tmp_path / "c", run_dir=tmp_path
    )
    joined = run_batch(labeled_config, Selection(limit=(name,)), options, stream=None)
    assert joined.exit_code == 0
    result = example("reset_then_join.py", labeled_config, name, cwd=tmp_path)
    assert result.stdout == f"{name}: reset, then join: ok\n", result.stderr
    # reset cleared the first join's record; the second join wrote the only one left.
    assert len(lab.join_records(name)) == 1


def test_simple_inventory_runs_a_command_and_pushes_a_file(lab: Lab, tmp_path: Path) -> None:
    nodes = lab.nodes[6:8]
    hosts = {
        node.name: {
            "hostname": node.address,
            "port": node.port,
            "username": lab.edge_user,
            "connection_options": {
                "kenornir_ssh": {"extras": {"key_file": str(lab.key_path), "sudo": True}}
            },
        }
        for node in nodes
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    pushed = tmp_path / "edge.env"
    pushed.write_text("EDGE_SITE=lab\n")
    remote = "/home/edge/edge.env"
    for node in nodes:
        lab.exec(node.name, f"rm -f {remote}")
    first = example("simple_inventory.py", "hosts.yaml", pushed, remote, cwd=tmp_path)
    again = example("simple_inventory.py", "hosts.yaml", pushed, remote, cwd=tmp_path)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert [line.split("; ")[1] for line in first.stdout.splitlines()] == ["sent 14 bytes"] * 2
    assert [line.split("; ")[1] for line in again.stdout.splitlines()] == ["already there"] * 2
    assert all(line.split(": ")[1].startswith("up ") for line in first.stdout.splitlines())
    for node in nodes:
        assert lab.exec(node.name, f"cat {remote}").stdout == "EDGE_SITE=lab\n"


def test_push_ca_then_join_joins_the_labelled_nodes_that_got_the_ca(
    labeled_config: Path, lab: Lab, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("lab CA\n")
    first, second, third = (n.name for n in lab.nodes[:3])
    for name in (first, second, third):
        lab.exec(name, "rm -rf /etc/kubeedge/ca")
    result = example("push_ca_then_join.py", labeled_config, ca, "site=north", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the second north node has a bad token
    assert "sftp_upload" in result.stdout and "join_node" in result.stdout
    for name in (first, second):
        assert lab.exec(name, "cat /etc/kubeedge/ca/rootCA.crt").stdout == "lab CA\n"
    assert lab.exec(third, "ls /etc/kubeedge/ca 2>&1 || true").stdout.strip() != "rootCA.crt"
