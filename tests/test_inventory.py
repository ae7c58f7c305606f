"""KeadmBatchInventory through InitNornir: hosts, connection extras, host data, filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from nornir import InitNornir
from nornir.core import Nornir
from nornir.core.filter import F

from kenornir.address import host_port
from kenornir.config import ConfigError, load_config
from kenornir.inventory import CONNECTION_PLUGIN, KeadmBatchInventory
from kenornir.secret import host_secrets, reveal

CONFIG = """\
keadm:
  keadmVersion: v1.20.0
  archGroup: [amd64, arm64]
  cmdTplArgs: {token: tok-123}
  preRun: [hooks/global.sh]
nodes:
  - nodeName: north-1
    keadmCmd: "join --edgenode-name={{ nodeName }} --token={{.token}}"
    labels: {site: north, tier: gold}
    copyFrom: files
    preRun: hooks/own.sh
    ssh:
      ip: 127.0.0.1
      username: root
      port: 2201
      auth: {type: password, passwordAuth: {password: pw-north}}
  - nodeName: north-2
    keadmCmd: join --edgenode-name=north-2
    labels: {site: north}
    keadmBinDir: /usr/local/bin
    ssh:
      ip: 127.0.0.2
      username: edge
      sudo: true
      auth: {type: privateKey, privateKeyAuth: {privateKeyPath: id_edge, passphrase: phrase}}
  - nodeName: south-1
    keadmCmd: reset edge
    labels: {site: south}
    ssh: {ip: 127.0.0.3, username: root}
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "setup.sh").write_text("true\n")
    (tmp_path / "hooks").mkdir()
    for name in ("global.sh", "own.sh"):
        (tmp_path / "hooks" / name).write_text("true\n")
    (tmp_path / "id_edge").write_text("key\n")
    path = tmp_path / "batch.yaml"
    path.write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def nr(config_file: Path) -> Nornir:
    return InitNornir(
        inventory={"plugin": "KeadmBatchInventory", "options": {"config_file": str(config_file)}},
        logging={"enabled": False},
    )


def test_one_host_per_node_with_connection_fields(nr: Nornir) -> None:
    hosts = nr.inventory.hosts
    assert list(hosts) == ["north-1", "north-2", "south-1"]
    north = hosts["north-1"]
    assert (north.hostname, north.port, north.username, north.platform) == (
        "127.0.0.1",
        2201,
        "root",
        "linux",
    )
    assert (north.password, reveal(north.password)) == ("********", "pw-north")
    assert hosts["south-1"].port == 22
    assert hosts["north-2"].password is None


def test_connection_extras_per_auth_kind(nr: Nornir, config_file: Path) -> None:
    def extras(name: str) -> object:
        return nr.inventory.hosts[name].get_connection_parameters(CONNECTION_PLUGIN).extras

    assert extras("north-1") == {"auth": "password", "sudo": False}
    north_2 = extras("north-2")
    assert north_2 == {
        "auth": "privateKey",
        "private_key_path": str(config_file.parent / "id_edge"),
        "passphrase": "********",
        "sudo": True,
    }
    assert isinstance(north_2, dict) and reveal(north_2["passphrase"]) == "phrase"
    assert extras("south-1") == {"auth": "agent", "sudo": False}


def test_host_data_has_exactly_the_task_inputs(nr: Nornir, config_file: Path) -> None:
    base = config_file.parent
    data = dict(nr.inventory.hosts["north-1"].data)
    assert {reveal(secret) for secret in data.pop("secrets")} == {"tok-123", "pw-north"}
    assert reveal(data["keadm_cmd"]) == "join --edgenode-name=north-1 --token=tok-123"
    assert data == {
        "labels": {"site": "north", "tier": "gold"},
        "keadm_cmd": "join --edgenode-name=north-1 --token=***",
        "copy_from": str(base / "files"),
        "keadm_bin_dir": None,
        "pre_run": [str(base / "hooks" / "global.sh"), str(base / "hooks" / "own.sh")],
        "post_run": [],
        "sudo": False,
        "arch_group": ["amd64", "arm64"],
        "keadm_version": "v1.20.0",
        "max_run_num": 5,
    }
    assert nr.inventory.hosts["north-2"].data["keadm_bin_dir"] == "/usr/local/bin"
    assert set(host_secrets(nr.inventory.hosts["north-2"].data)) == {"tok-123", "phrase"}


def test_filter_by_label_and_by_name(nr: Nornir) -> None:
    assert list(nr.filter(F(labels__site="north")).inventory.hosts) == ["north-1", "north-2"]
    assert list(nr.filter(F(labels__tier="gold")).inventory.hosts) == ["north-1"]
    assert list(nr.filter(F(name__in=["south-1", "nope"])).inventory.hosts) == ["south-1"]
    assert list(nr.filter(~F(labels__site="north")).inventory.hosts) == ["south-1"]


def test_an_already_loaded_config_needs_no_file(config_file: Path) -> None:
    config = load_config(config_file)
    config_file.unlink()
    inventory = KeadmBatchInventory(config=config).load()
    assert list(inventory.hosts) == ["north-1", "north-2", "south-1"]
    assert reveal(inventory.hosts["north-1"].data["keadm_cmd"]) == config.nodes[0].keadm_cmd


def test_a_bad_config_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nodes: []\n")
    with pytest.raises(ConfigError, match="nodes: is empty"):
        KeadmBatchInventory(config_file=path).load()


def test_exactly_one_source_is_required(config_file: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        KeadmBatchInventory()
    with pytest.raises(ValueError, match="exactly one"):
        KeadmBatchInventory(config_file=config_file, config=load_config(config_file))


def test_nornir_writes_no_log_file(nr: Nornir, config_file: Path) -> None:
    assert nr.inventory.hosts
    assert not (config_file.parent / "nornir.log").exists()


def test_addresses_are_written_one_way_ipv6_bracketed() -> None:
    assert host_port("127.0.0.1", 2201) == "127.0.0.1:2201"
    assert host_port("fd00::1", None) == "[fd00::1]:22"
    assert host_port("edge-1.example", 22) == "edge-1.example:22"
