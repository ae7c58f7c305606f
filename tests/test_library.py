"""kenornir as a Nornir library: its tasks on a plain SimpleInventory, SFTP uploads, the generic
command task, InitNornir's settings and an inventory that holds no secret."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from nornir import InitNornir
from nornir.core import Nornir

import kenornir
from kenornir.config import STAGING_DIR, load_config
from kenornir.tasks import (
    connect,
    probe_node,
    run_command,
    run_keadm,
    sftp_download,
    sftp_upload,
    upload_files,
)
from kenornir.tasks.files import FileToSend
from tests.batch_configs import LAB_TOKEN, node_entry, offline_dir_of, write_config
from tests.lab import Lab

pytestmark = pytest.mark.lab

# The lab nodes these tests use (the last ones, which other tests leave alone).
ROOT_NODE, SUDO_NODE = -1, -2


def hosts_yaml(lab: Lab, tmp_path: Path, logins: list[tuple[int, str]]) -> Path:
    """Nornir's own hosts.yaml: one host per (lab node index, user), as a Nornir user writes it."""
    hosts = {}
    for index, user in logins:
        node = lab.nodes[index]
        extras: dict[str, object] = {
            "known_hosts": str(tmp_path / "known_hosts"),
            "sudo": user != "root",
            "connect_timeout": 5,
        }
        host: dict[str, object] = {"hostname": node.address, "port": node.port, "username": user}
        if user == lab.sudo_password_user:
            host["password"] = lab.password
        else:
            extras["key_file"] = str(lab.key_path)
        host["connection_options"] = {"kenornir_ssh": {"extras": extras}}
        hosts[f"{node.name}-{user}"] = host
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(hosts))
    return path


def simple_nornir(hosts_file: Path) -> Nornir:
    return InitNornir(
        inventory={"plugin": "SimpleInventory", "options": {"host_file": str(hosts_file)}},
        logging={"enabled": False},
    )


@pytest.fixture
def simple(lab: Lab, tmp_path: Path) -> Nornir:
    logins = [(ROOT_NODE, "root"), (SUDO_NODE, lab.edge_user), (SUDO_NODE, lab.sudo_password_user)]
    return simple_nornir(hosts_yaml(lab, tmp_path, logins))


def test_run_command_on_a_simple_inventory_as_the_login_user_and_as_root(
    simple: Nornir, lab: Lab
) -> None:
    as_user = simple.run(task=run_command, command="id -un")
    as_root = simple.run(task=run_command, command="id -un", as_root=True)
    assert not as_user.failed and not as_root.failed
    users = {name: result[0].result.strip() for name, result in as_user.items()}
    assert users == {name: simple.inventory.hosts[name].username for name in users}
    assert {result[0].result.strip() for result in as_root.values()} == {"root"}


def test_run_command_fails_with_the_exit_status_and_kills_what_times_out(
    simple: Nornir, lab: Lab
) -> None:
    root = simple.filter(filter_func=lambda host: host.username == "root")
    failed = root.run(task=run_command, command="echo out; echo why >&2; exit 3")
    result = next(iter(failed.values()))[0]
    assert result.failed and result.exit_status == 3
    assert (result.stdout, str(result.exception)) == ("out\n", "command failed (exit 3): why")
    marker = "sleep 300.4711"  # a command line no other process has
    slow = root.run(task=run_command, command=marker, timeout=2, on_failed=True)
    result = next(iter(slow.values()))[0]
    assert result.failed
    assert str(result.exception) == "command did not finish within 2s and was killed"
    node = lab.nodes[ROOT_NODE].name
    assert not [cmd for cmd in lab.processes(node).values() if marker in cmd]


def test_sftp_upload_skips_what_the_node_holds_and_sends_a_changed_mode(
    simple: Nornir, lab: Lab, tmp_path: Path
) -> None:
    root = simple.filter(filter_func=lambda host: host.username == "root")
    local = tmp_path / "app.conf"
    local.write_bytes(b"setting=1\n" * 1000)
    remote = "/root/kenornir-sftp/deep/app.conf"
    first = next(iter(root.run(task=sftp_upload, local=local, remote=remote).values()))[0]
    again = next(iter(root.run(task=sftp_upload, local=local, remote=remote).values()))[0]
    mode = root.run(task=sftp_upload, local=local, remote=remote, mode=0o600)
    assert (first.changed, again.changed, next(iter(mode.values()))[0].changed) == (
        True,
        False,
        True,
    )
    assert first.result.sent_bytes == local.stat().st_size
    node = lab.nodes[ROOT_NODE].name
    listing = lab.exec(
        node, f"stat -c '%a %U' {remote}; sha256sum {remote}; ls -a /root/kenornir-sftp/deep"
    )
    mode_owner, digest, names = listing.stdout.split("\n", 2)
    assert mode_owner == "600 root"
    assert digest.split()[0] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert names.split() == [".", "..", "app.conf"]  # no part or note left behind


def test_sftp_upload_of_a_missing_file_says_so(simple: Nornir, tmp_path: Path) -> None:
    root = simple.filter(filter_func=lambda host: host.username == "root")
    missing = tmp_path / "nowhere.crt"
    result = next(iter(root.run(task=sftp_upload, local=missing, remote="/root/x").values()))
    assert str(result[0].exception) == f"cannot read {missing}: No such file or directory"


def test_sftp_upload_as_root_installs_where_only_root_may_write(
    simple: Nornir, lab: Lab, tmp_path: Path
) -> None:
    sudo_hosts = simple.filter(filter_func=lambda host: host.username != "root")
    ca = tmp_path / "rootCA.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nlab\n-----END CERTIFICATE-----\n")
    node = lab.nodes[SUDO_NODE].name
    lab.exec(node, "rm -rf /etc/kubeedge/ca")
    remote = "/etc/kubeedge/ca/rootCA.crt"
    refused = sudo_hosts.run(task=sftp_upload, local=ca, remote=remote)
    assert all(result.failed for result in refused.values())
    assert "Permission denied" in str(next(iter(refused.values()))[0].exception)
    for host in sudo_hosts.inventory.hosts.values():  # one after the other: the same file
        one = sudo_hosts.filter(name=host.name)
        pushed = one.run(task=sftp_upload, local=ca, remote=remote, as_root=True, on_failed=True)
        result = pushed[host.name]
        assert not result.failed, result[0].exception
    assert lab.exec(node, f"stat -c '%a %U' {remote}").stdout.strip() == "644 root"
    assert lab.exec(node, f"cat {remote}").stdout == ca.read_text()
    assert "rootCA" not in lab.exec(node, "ls -a /home/edge/.kenornir-parts").stdout


def test_sftp_download_fetches_a_node_file(simple: Nornir, lab: Lab, tmp_path: Path) -> None:
    root = simple.filter(filter_func=lambda host: host.username == "root")
    lab.exec(lab.nodes[ROOT_NODE].name, "printf 'node log\\n' >/root/edge.log")
    local = tmp_path / "fetched" / "edge.log"
    local.parent.mkdir()
    result = next(iter(root.run(task=sftp_download, remote="/root/edge.log", local=local).values()))
    assert not result.failed and local.read_text() == "node log\n"
    missing = root.run(task=sftp_download, remote="/root/none.log", local=tmp_path / "x")
    assert "download of /root/none.log failed" in str(next(iter(missing.values()))[0].exception)


def test_keadm_tasks_on_a_simple_inventory(simple: Nornir, lab: Lab) -> None:
    sudo = simple.filter(filter_func=lambda host: host.username == lab.edge_user)
    node = lab.nodes[SUDO_NODE]
    lab.exec(node.name, "rm -rf /tmp/kubeedge")
    keadm = Path(__file__).parent / "lab" / "fake_keadm.sh"
    sha256 = hashlib.sha256(keadm.read_bytes()).hexdigest()

    def keadm_version(task):  # type: ignore[no-untyped-def]
        task.run(task=connect)
        facts = task.run(task=probe_node)[0].result
        task.run(task=kenornir.tasks.stage_dir, verdict=facts.staging)
        task.run(task=upload_files, files=[FileToSend(keadm, f"{STAGING_DIR}/keadm", 0o755)])
        return task.run(task=run_keadm, keadm_cmd="version", binary_sha256=sha256)[0]

    result = next(iter(sudo.run(task=keadm_version).values()))
    assert not result.failed, result[0].exception
    assert result[-1].stdout.startswith("version: version.Info{")


def test_inventory_dict_is_plain_json_without_secrets(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_PASSWORD", lab.password)
    node = node_entry(lab, lab.nodes[0].name, cmd="{{.cmd}} --token={{.token}}", auth="password")
    node["ssh"]["auth"]["passwordAuth"]["password"] = "${LAB_PASSWORD}"
    config = write_config(tmp_path / "batch.yaml", [node], offline_dir_of(lab_packages))
    nr = kenornir.init_nornir(config)
    dumped = json.dumps(nr.inventory.dict())
    assert LAB_TOKEN not in dumped and lab.password not in dumped
    assert "--token=***" in dumped
    host = nr.inventory.hosts[lab.nodes[0].name]
    assert lab.password not in repr(host.password) + str(host.data) + repr(host.connection_options)


def test_nornir_settings_give_init_nornir_max_run_num_workers(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    nodes = [node_entry(lab, node.name) for node in lab.nodes[:3]]
    config = write_config(tmp_path / "batch.yaml", nodes, offline_dir_of(lab_packages))
    data = yaml.safe_load(config.read_text())
    data["maxRunNum"] = 3
    config.write_text(yaml.safe_dump(data))
    nr = InitNornir(**kenornir.nornir_settings(str(config)))
    assert nr.runner.num_workers == 3 == load_config(config).max_run_num
    assert sorted(nr.inventory.hosts) == sorted(node.name for node in lab.nodes[:3])


def test_a_misspelt_extras_key_is_an_error_not_a_default(lab: Lab, tmp_path: Path) -> None:
    hosts_file = hosts_yaml(lab, tmp_path, [(ROOT_NODE, "root")])
    hosts = yaml.safe_load(hosts_file.read_text())
    extras = next(iter(hosts.values()))["connection_options"]["kenornir_ssh"]["extras"]
    extras["keyfile"] = extras.pop("key_file")
    extras["connect_timeout"] = "soon"
    hosts_file.write_text(yaml.safe_dump(hosts))
    result = next(iter(simple_nornir(hosts_file).run(task=run_command, command="true").values()))
    assert result.failed
    node = lab.nodes[ROOT_NODE]
    assert str(result[0].exception) == (
        f"{node.address}:{node.port}: unknown kenornir_ssh extras key 'keyfile' (did you mean "
        "'key_file'?); known keys: auth, private_key_path, key_file, passphrase, sudo, "
        "proxy_jump, connect_timeout, keepalive_seconds, host_key_policy, known_hosts, "
        "command_timeout"
    )
    del extras["keyfile"]
    hosts_file.write_text(yaml.safe_dump(hosts))
    result = next(iter(simple_nornir(hosts_file).run(task=run_command, command="true").values()))
    assert str(result[0].exception).endswith(
        "kenornir_ssh extras connect_timeout: 'soon' is not a positive number of seconds"
    )
