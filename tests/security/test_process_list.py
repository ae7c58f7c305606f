"""The token reaches the node in keadm's own argv only: no other process, no sudo log line."""

from __future__ import annotations

import pytest

from tests.batch_configs import LAB_TOKEN
from tests.faults.conftest import FaultLab

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

SLOW_JOIN = "{{.cmd}} --edgenode-name={{nodeName}} --token={{.token}} --fake-sleep=4"


def test_token_shows_in_no_process_but_keadm_nor_in_the_sudo_log(fault_lab: FaultLab) -> None:
    lab = fault_lab.lab
    logins = {
        "node-001": {"user": "root", "auth": "privateKey"},
        "node-002": {"user": lab.edge_user, "auth": "password"},
        "node-003": {"user": lab.sudo_password_user, "auth": "password"},
    }
    nodes = [fault_lab.entry(name, cmd=SLOW_JOIN, **login) for name, login in logins.items()]

    run, seen = fault_lab.run_watching_keadm(fault_lab.config(nodes), "slow-keadm", list(logins))

    assert run.statuses() == dict.fromkeys(logins, "ok"), run.stderr
    assert seen.keys() == logins.keys(), "keadm was never seen running"
    for name, command_lines in seen.items():
        holders = [line for line in command_lines if LAB_TOKEN in line]
        assert len(holders) == 1, (name, holders)
        assert "./keadm join" in holders[0]
    for name in ("node-002", "node-003"):
        sudo_log = lab.sudo_log(name)
        assert "COMMAND=" in sudo_log  # sudo did log what it ran
        assert LAB_TOKEN not in sudo_log
