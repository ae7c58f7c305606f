"""The two transfer paths on two userlands: `auto` streams to a coreutils node and uses SFTP on a
BusyBox node (whose `head -c` over-reads a pipe), and a whole batch succeeds on both."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenornir.batch import RunOptions, Selection, run_batch
from kenornir.config import TransferMode
from tests.batch_configs import copy_from_dir, node_entry, offline_dir_of, write_config
from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab


def node_log(run_dir: Path, name: str) -> str:
    return (run_dir / f"{name}.log").read_text()


def batch(lab: Lab, lab_packages: dict[str, Path], tmp_path: Path) -> Path:
    copy_from = copy_from_dir(tmp_path)
    hook = tmp_path / "check.sh"
    hook.write_text("#!/bin/bash\necho hook ran\n")
    nodes = [
        node_entry(lab, node.name, copy_from=copy_from, extra={"preRun": [str(hook)]})
        for node in lab.nodes
    ]
    return write_config(tmp_path / "batch.yaml", nodes, offline_dir_of(lab_packages))


def run(config: Path, tmp_path: Path, label: str, transfer: TransferMode | None = None) -> Path:
    options = RunOptions(
        known_hosts=tmp_path / "known_hosts",
        cache_dir=tmp_path / "cache",
        run_dir=tmp_path / label,
        transfer=transfer,
    )
    result = run_batch(config, Selection(), options, stream=None)
    statuses = {o.node: (o.status, o.reason) for o in result.outcomes}
    assert result.exit_code == 0, statuses
    return result.run_dir


def test_auto_streams_to_coreutils_and_uses_sftp_on_busybox(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=2, busybox_nodes=1)
    stream_node, busybox_node = (node.name for node in lab.nodes)
    assert [node.flavour for node in lab.nodes] == ["coreutils", "busybox"]
    config = batch(lab, lab_packages, tmp_path)
    first = run(config, tmp_path, "first")
    streamed, over_sftp = node_log(first, stream_node), node_log(first, busybox_node)
    assert "uploaded: /tmp/kubeedge/keadm/keadm (" in streamed
    assert "uploaded over SFTP" not in streamed
    assert "uploaded over SFTP: /tmp/kubeedge/keadm/keadm (" in over_sftp
    assert "uploaded over SFTP: /tmp/kubeedge/keadm/install-containerd.sh" in over_sftp
    assert "hook ran" in over_sftp and "hook ran" in streamed
    # The next run finds everything in place on both paths: the notes are the same.
    lab.forget_joins()
    again = run(config, tmp_path, "again")
    for name in (stream_node, busybox_node):
        assert "uploaded" not in node_log(again, name)
        assert "unchanged: /tmp/kubeedge/keadm/keadm" in node_log(again, name)


def test_sftp_everywhere_when_asked_and_the_stream_breaks_on_busybox(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=2, busybox_nodes=1)
    stream_node, busybox_node = (node.name for node in lab.nodes)
    config = batch(lab, lab_packages, tmp_path)
    sftp = run(config, tmp_path, "sftp", transfer="sftp")
    assert "uploaded over SFTP: /tmp/kubeedge/keadm/keadm (" in node_log(sftp, stream_node)
    for name in (stream_node, busybox_node):
        lab.exec(name, "rm -rf /tmp/kubeedge")
    lab.forget_joins()
    options = RunOptions(
        known_hosts=tmp_path / "known_hosts",
        cache_dir=tmp_path / "cache",
        run_dir=tmp_path / "stream",
        transfer="stream",
    )
    forced = run_batch(config, Selection(), options, stream=None)
    outcomes = {o.node: o for o in forced.outcomes}
    assert outcomes[stream_node].status == "ok"
    assert (outcomes[busybox_node].status, outcomes[busybox_node].stage) == ("failed", "upload")
    assert "cannot carry several files" in (outcomes[busybox_node].reason or "")
