"""--ssh-config: an OpenSSH client config fills in the nodes' ssh fields the batch config leaves
out, by each node's `ip`; what the batch config writes wins; a file that cannot be read is one
line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenornir.config import ConfigError, load_config

BATCH = """\
keadm:
  keadmVersion: v1.22.0
  archGroup: [amd64]
  offlinePackageDir: @DIR@
  download: {enable: false}
nodes:
  - nodeName: edge-1
    keadmCmd: join --token=t
    ssh: {ip: edge-1.north}
  - nodeName: edge-2
    keadmCmd: join --token=t
    ssh:
      ip: edge-2.north
      username: admin
      port: 2200
      auth: {type: password, passwordAuth: {password: secret}}
      proxyJump: ops@10.9.0.1
"""

SSH_CONFIG = """\
Host *.north
  User root
  Port 2222
  IdentityFile @DIR@/north_ed25519
  ProxyJump jump@10.8.0.1:2022
Host edge-1.north
  HostName 10.8.0.11
Host edge-2.north
  HostName 10.8.0.12
"""


def load(tmp_path: Path, ssh_config: str | None) -> list[dict[str, object]]:
    (tmp_path / "north_ed25519").write_text("a key file\n")
    (tmp_path / "batch.yaml").write_text(BATCH.replace("@DIR@", str(tmp_path)))
    openssh = None
    if ssh_config is not None:
        openssh = tmp_path / "ssh_config"
        openssh.write_text(ssh_config.replace("@DIR@", str(tmp_path)))
    config = load_config(tmp_path / "batch.yaml", ssh_config=openssh)
    return [
        {
            "address": node.ssh.address,
            "user": node.ssh.username,
            "auth": node.ssh.auth.kind,
            "key": node.ssh.auth.private_key_path,
            "jump": [(hop.username, hop.ip, hop.port) for hop in node.ssh.proxy_jump],
        }
        for node in config.nodes
    ]


def test_the_file_fills_in_what_the_batch_config_leaves_out(tmp_path: Path) -> None:
    first, second = load(tmp_path, SSH_CONFIG)

    key = str(tmp_path / "north_ed25519")
    assert first == {
        "address": "10.8.0.11:2222",
        "user": "root",
        "auth": "privateKey",
        "key": key,
        "jump": [("jump", "10.8.0.1", 2022)],
    }
    # Written in the batch config: its user, port, auth and jump host win; HostName still maps.
    assert second["address"] == "10.8.0.12:2200"
    assert (second["user"], second["auth"]) == ("admin", "password")
    assert second["jump"] == [("ops", "10.9.0.1", 22)]


def test_without_the_option_no_ssh_config_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, None)
    assert any("nodes[0].ssh.username" in line for line in error.value.errors)


def test_an_unreadable_ssh_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "batch.yaml").write_text(BATCH)
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "batch.yaml", ssh_config=missing)
    assert error.value.errors == [
        f"--ssh-config {missing}: cannot be read: No such file or directory"
    ]


def test_a_jump_host_alias_takes_its_own_host_block(tmp_path: Path) -> None:
    aliased = SSH_CONFIG.replace("ProxyJump jump@10.8.0.1:2022", "ProxyJump gw-north,ops@gw-south")
    aliased += "Host gw-*\n  User gate\n  IdentityFile @DIR@/north_ed25519\n"
    aliased += "Host gw-north\n  HostName 10.8.0.1\n  Port 2022\n"

    first, _ = load(tmp_path, aliased)

    # Each hop as OpenSSH would log in to it; a user written in ProxyJump wins over User.
    assert first["jump"] == [("gate", "10.8.0.1", 2022), ("ops", "gw-south", 22)]
