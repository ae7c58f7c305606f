"""kenornir's tasks used one by one, as a script composing them would, against a lab node."""

from __future__ import annotations

from pathlib import Path

import pytest
from nornir.core import Nornir
from nornir.core.task import Result, Task

import kenornir
from kenornir.batch import RunOptions, prepare
from kenornir.config import STAGING_DIR, load_config
from kenornir.packages import KeadmPackage
from kenornir.tasks import (
    connect,
    detect_arch,
    join_node,
    probe_node,
    run_keadm,
    stage_dir,
    upload_dir,
)
from kenornir.tasks.files import FileToSend, file_versions
from kenornir.tasks.transfer import dir_files
from tests.batch_configs import copy_from_dir, node_entry, offline_dir_of, write_config
from tests.lab import Lab

pytestmark = pytest.mark.lab


def one_node_config(lab: Lab, lab_packages: dict[str, Path], tmp_path: Path) -> Path:
    node = node_entry(lab, lab.nodes[0].name, cmd="{{.cmd}} --token={{.token}}")
    return write_config(tmp_path / "one.yaml", [node], offline_dir_of(lab_packages))


def one_node_nornir(config: Path, tmp_path: Path) -> Nornir:
    return kenornir.init_nornir(config, ssh={"known_hosts": tmp_path / "known_hosts"})


def joined_node(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> tuple[Nornir, dict[str, KeadmPackage]]:
    """The first lab node joined by join_node, with the nornir and packages that did it."""
    config = one_node_config(lab, lab_packages, tmp_path)
    packages = prepare(load_config(config), RunOptions(cache_dir=tmp_path / "cache"))
    nr = one_node_nornir(config, tmp_path)
    assert nr.run(task=join_node, packages=packages)[lab.nodes[0].name][0].result.status == "ok"
    return nr, packages


def test_probe_answers_what_the_tasks_ask_one_by_one(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab.exec(lab.nodes[0].name, "rm -rf /tmp/kubeedge")
    copy_from = copy_from_dir(tmp_path)
    versions = file_versions(dir_files(copy_from))

    def one_by_one(task: Task) -> Result:
        task.run(task=connect)
        before = task.run(task=probe_node, versions=versions)[0].result
        arch = task.run(task=detect_arch)[0].result
        created = task.run(task=stage_dir)[0]
        uploaded = task.run(task=upload_dir, local_dir=copy_from)[0]
        after = task.run(task=probe_node, versions=versions)[0].result
        again = task.run(task=stage_dir, verdict=after.staging)[0]
        return Result(host=task.host, result=(before, arch, created, uploaded, after, again))

    nr = one_node_nornir(one_node_config(lab, lab_packages, tmp_path), tmp_path)
    result = nr.run(task=one_by_one)
    assert not result.failed, result[lab.nodes[0].name][0].exception
    before, arch, created, uploaded, after, again = result[lab.nodes[0].name][0].result
    assert before.arch == arch == lab.nodes[0].goarch
    assert (before.staging, after.staging) == ("missing", "ok")  # nothing staged yet, then staged
    assert before.remote.unchanged == frozenset() and before.remote.has_zstd
    assert created.changed and uploaded.changed
    assert after.remote.unchanged == frozenset(versions)
    assert not again.changed  # the dirs exist and are safe: nothing to create


def test_after_a_join_the_probe_sees_keadm_of_its_own_arch_only(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    nr, packages = joined_node(lab, lab_packages, tmp_path)
    node = lab.nodes[0].name
    keadm_per_arch = file_versions(
        [
            FileToSend(package.binary, f"{STAGING_DIR}/keadm", sha256=package.binary_sha256)
            for package in packages.values()
        ]
    )

    def probe(task: Task) -> Result:
        task.run(task=connect)
        return Result(
            host=task.host, result=task.run(task=probe_node, versions=keadm_per_arch)[0].result
        )

    facts = nr.run(task=probe)[node][0].result
    held = {version.sha256 for version in facts.remote.unchanged}
    assert held == {packages[facts.arch].binary_sha256}


def test_keadm_without_its_note_is_hashed_and_a_changed_one_refused(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    nr, packages = joined_node(lab, lab_packages, tmp_path)
    node = lab.nodes[0]
    sha256 = packages[node.goarch].binary_sha256

    def keadm_version(task: Task) -> Result:
        task.run(task=connect)
        ran = task.run(
            task=run_keadm, workdir=STAGING_DIR, keadm_cmd="version", binary_sha256=sha256
        )
        return Result(host=task.host, result=ran[0].result)

    # No note (placed by other means): the same bytes pass the hash.
    lab.exec(node.name, f"rm {STAGING_DIR}/.keadm.kenornir")
    assert nr.run(task=keadm_version)[node.name][0].result == 0
    lab.exec(node.name, f"printf x >> {STAGING_DIR}/keadm")
    refused = nr.run(task=keadm_version)[node.name]
    assert refused.failed
    assert "differs from the uploaded one" in str(refused[-1].exception)
