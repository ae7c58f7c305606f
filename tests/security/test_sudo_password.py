"""sudo's password goes to sudo alone: only when sudo asks, never to the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenornir.connection import KenornirSSH
from tests.faults.conftest import FaultLab
from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab

# Reads whatever reaches its stdin, and says what it got.
READS_STDIN = 'read -r line; echo "stdin gave: [${line:-}]"; id -u'


def sudo_login(
    lab: Lab, tmp_path: Path, user: str, auth: str = "password", connect_timeout: float = 10
) -> KenornirSSH:
    node = lab.nodes[0]
    ssh = KenornirSSH()
    extras: dict[str, object] = {
        "known_hosts": str(tmp_path / "known_hosts"),
        "auth": auth,
        "sudo": True,
        "connect_timeout": connect_timeout,
    }
    if auth == "privateKey":
        extras["private_key_path"] = str(lab.key_path)
    password = lab.password if auth == "password" else None
    ssh.open(node.address, user, password, node.port, "linux", extras)
    return ssh


def test_sudo_that_asks_gets_the_password_and_the_command_does_not(
    lab: Lab, tmp_path: Path
) -> None:
    ssh = sudo_login(lab, tmp_path, lab.sudo_password_user)
    try:
        assert ssh.run("id -u", as_root=False).stdout != "0\n"
        result = ssh.run(READS_STDIN)
    finally:
        ssh.close()
    assert (result.exit_status, result.stdout) == (0, "stdin gave: []\n0\n"), result.stderr
    assert lab.password not in result.stderr
    assert ssh.password_prompt not in result.stderr


def test_sudo_without_a_password_never_gets_it(lab: Lab, tmp_path: Path) -> None:
    ssh = sudo_login(lab, tmp_path, lab.edge_user)  # NOPASSWD: sudo asks nothing
    try:
        result = ssh.run(READS_STDIN)
    finally:
        ssh.close()
    assert (result.exit_status, result.stdout) == (0, "stdin gave: []\n0\n"), result.stderr


def test_sudo_that_asks_when_no_password_is_known_fails_saying_so(lab: Lab, tmp_path: Path) -> None:
    ssh = sudo_login(lab, tmp_path, lab.sudo_password_user, auth="privateKey")
    try:
        result = ssh.run("id -u")
    finally:
        ssh.close()
    assert result.exit_status == 1
    assert "a password is required" in result.stderr


def test_a_hook_on_a_sudo_node_reads_no_password(fault_lab: FaultLab, tmp_path: Path) -> None:
    hook = tmp_path / "reads-stdin.sh"
    hook.write_text(READS_STDIN + "\n")
    users = {"node-001": fault_lab.lab.edge_user, "node-002": fault_lab.lab.sudo_password_user}
    nodes = [
        {**fault_lab.entry(name, auth="password", user=user), "preRun": [str(hook)]}
        for name, user in users.items()
    ]

    # The leak check of every fault run fails the test if the password reached any output.
    run = fault_lab.run(fault_lab.config(nodes), "hook-reads-stdin")

    assert run.statuses() == {"node-001": "ok", "node-002": "ok"}, run.stderr
    for name in users:
        assert "stdout: stdin gave: []" in run.node_log(name)


def test_sudo_slower_than_the_connect_timeout_fails_the_command(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1)
    node = lab.nodes[0].name
    # This node's sudo takes 4 s after the password (a slow PAM session module).
    slow_pam = (
        "cp /etc/pam.d/sudo /root/pam-sudo && "
        "echo 'session optional pam_exec.so quiet /usr/bin/sleep 4' >> /root/pam-sudo && "
        "mount --bind /root/pam-sudo /etc/pam.d/sudo"
    )
    assert lab.exec(node, slow_pam).returncode == 0
    ssh = sudo_login(lab, tmp_path, lab.sudo_password_user, connect_timeout=2)
    try:
        result = ssh.run("touch /root/ran; id -u")
    finally:
        ssh.close()
    assert result.exit_status != 0
    assert "sudo did not start the command within 2s" in result.stderr
    assert lab.exec(node, "test -e /root/ran").returncode == 1


def test_a_login_banner_gets_neither_the_password_nor_the_script(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1)
    user = lab.sudo_password_user
    lab.exec(lab.nodes[0].name, f"echo 'echo Welcome, authorized use only' > /home/{user}/.bashrc")
    ssh = sudo_login(lab, tmp_path, user)
    try:
        result = ssh.run(READS_STDIN)
    finally:
        ssh.close()
    assert (result.exit_status, result.stdout) == (0, "stdin gave: []\n0\n"), result.stderr
