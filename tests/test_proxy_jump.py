"""Nodes reached through a jump host (nodes[].ssh.proxyJump), in OpenSSH's string form and as
objects shaped like ssh; the jump host's own sshd log shows the login that carried them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kenornir.batch import RunOptions, Selection, run_batch
from kenornir.config import ConfigError, parse_config
from tests.batch_configs import node_entry, offline_dir_of, write_config
from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab


def logins_on(lab: Lab, name: str) -> int:
    """Logins the node's sshd accepted so far (its log, written with -e)."""
    log = (lab.state_dir / "nodes" / name / "sshd.log").read_text()
    return log.count("Accepted publickey")


def run_through(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path, proxy_jump: Any
) -> dict[str, Any]:
    target = lab.nodes[1].name
    node = node_entry(lab, target, cmd="join --token={{.token}}")
    node["ssh"]["proxyJump"] = proxy_jump
    config = write_config(tmp_path / "batch.yaml", [node], offline_dir_of(lab_packages))
    options = RunOptions(
        known_hosts=tmp_path / "known_hosts", cache_dir=tmp_path / "cache", run_dir=tmp_path / "run"
    )
    record: dict[str, Any] = run_batch(config, Selection(), options, stream=None).report["nodes"][0]
    return record


@pytest.mark.parametrize("form", ["string", "objects"])
def test_a_node_is_joined_through_its_jump_host(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path, form: str
) -> None:
    lab = make_lab(nodes=2)
    bastion = lab.nodes[0]
    if form == "string":
        proxy_jump: Any = f"root@{bastion.address}:{bastion.port}"
    else:
        proxy_jump = [
            {
                "ip": bastion.address,
                "port": bastion.port,
                "username": "root",
                "auth": {
                    "type": "privateKey",
                    "privateKeyAuth": {"privateKeyPath": str(lab.key_path)},
                },
            }
        ]
    before = logins_on(lab, bastion.name)
    record = run_through(lab, lab_packages, tmp_path, proxy_jump)
    assert (record["status"], record["reason"]) == ("ok", None)
    assert logins_on(lab, bastion.name) == before + 1
    # The jump host's key was checked and learned like a node's.
    assert bastion.address in (tmp_path / "known_hosts").read_text()


def test_a_jump_host_that_is_down_makes_its_node_unreachable_naming_it(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=2)
    bastion = lab.nodes[0]
    lab.stop_sshd(bastion.name)
    record = run_through(lab, lab_packages, tmp_path, f"root@{bastion.address}")
    assert (record["status"], record["stage"]) == ("unreachable", "connect")
    assert record["reason"].startswith(f"jump host root@{bastion.address}:22: ")


@pytest.mark.parametrize(
    ("proxy_jump", "problem"),
    [
        ("10.0.0.1", "'10.0.0.1' names no user (write user@10.0.0.1)"),
        ("ops@300.1.1.1", "'ops@300.1.1.1' is not user@host[:port] (e.g. ops@10.0.0.1:2222)"),
        ("ops@host:99999", "'ops@host:99999' is not user@host[:port] (e.g. ops@10.0.0.1:2222)"),
    ],
)
def test_a_bad_proxy_jump_is_named(proxy_jump: str, problem: str) -> None:
    text = (
        "keadm: {keadmVersion: v1.20.0, archGroup: [amd64]}\n"
        "nodes:\n- nodeName: edge-1\n  keadmCmd: join\n"
        f"  ssh: {{ip: 10.0.0.11, username: root, proxyJump: '{proxy_jump}'}}\n"
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text, source="t.yaml", env={})
    assert raised.value.errors == [f"t.yaml: nodes[0].ssh.proxyJump: {problem}"]
