"""The scripts in examples/ run as a user would run them, against the lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
