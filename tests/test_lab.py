"""The local edge lab: real sshd nodes with private /tmp, arch personalities and lab logins."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
import yaml

from tests.lab import ARCH_CYCLE, Lab, LabError, LabFactory, LabNode, leased_subnet
from tests.lab.node import read_banner
from tests.lab.packages import keadm_member_digest
from tests.lab.subnets import node_address, validate_subnet

REPO = Path(__file__).parent.parent
SSH_TIMEOUT = 30


def ssh(lab: Lab, name: str, command: str, user: str = "root") -> subprocess.CompletedProcess[str]:
    """The system ssh client with the lab key (BatchMode: a password prompt fails instead)."""
    return subprocess.run(
        lab.ssh_command(name, command, user=user),
        capture_output=True,
        text=True,
        check=False,
        timeout=SSH_TIMEOUT,
    )


def password_login(node: LabNode, user: str, password: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        node.address,
        node.port,
        username=user,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=SSH_TIMEOUT,
    )
    return client


def remote_output(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=SSH_TIMEOUT)
    return stdout.read().decode()


def recorded_pids(state_dir: Path) -> list[int]:
    state = json.loads((state_dir / "lab.json").read_text())
    return [pid for node in state["nodes"] for pid in (node["holder_pid"], node["sshd_pid"]) if pid]


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


# Addresses: pure functions, no lab needed.


def test_node_addresses_use_the_subnet_then_the_second_octet() -> None:
    assert node_address("127.0.10", 0) == "127.0.10.1"
    assert node_address("127.0.10", 249) == "127.0.10.250"
    assert node_address("127.0.10", 250) == "127.1.10.1"
    assert len({node_address("127.0.10", index) for index in range(300)}) == 300


@pytest.mark.parametrize("subnet", ["10.0.0", "127.0", "127.0.300", "127.0.x", "127.0.10.1"])
def test_non_loopback_or_malformed_subnets_are_refused(subnet: str) -> None:
    with pytest.raises(ValueError, match="subnet"):
        validate_subnet(subnet)


def test_leased_subnets_are_exclusive() -> None:
    with leased_subnet() as first, leased_subnet() as second:
        assert first != second
        assert first.startswith("127.0.")


# The session lab: 12 nodes, arch mix.


@pytest.mark.lab
def test_nodes_are_named_addressed_and_arched_in_order(lab: Lab) -> None:
    assert [node.name for node in lab.nodes] == [f"node-{i:03d}" for i in range(1, 13)]
    assert [node.address for node in lab.nodes] == [f"{lab.subnet}.{i}" for i in range(1, 13)]
    assert [node.arch for node in lab.nodes] == list(ARCH_CYCLE) * 4
    assert all(node.port == 22 for node in lab.nodes)


@pytest.mark.lab
def test_every_node_listens_on_its_own_loopback_address(lab: Lab) -> None:
    for node in lab.nodes:
        listening = lab.exec(node.name, "ss -Htln").stdout
        assert f"{node.address}:22" in listening
    assert all(status.answering for status in lab.status())


@pytest.mark.lab
def test_root_key_login_sees_the_nodes_arch(lab: Lab) -> None:
    for node in lab.nodes:
        result = ssh(lab, node.name, "id -u; uname -m")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["0", node.arch]


@pytest.mark.lab
def test_uname_all_and_processor_report_the_personality(lab: Lab) -> None:
    node = lab.nodes[1]  # aarch64
    result = ssh(lab, node.name, "uname -a; uname -p; uname -sm; uname -s")
    lines = result.stdout.splitlines()

    assert lines[0].startswith("Linux ") and lines[0].endswith(" aarch64 GNU/Linux")
    assert lines[1:] == ["aarch64", "Linux aarch64", "Linux"]


@pytest.mark.lab
def test_tmp_and_kubeedge_are_private_to_each_node(lab: Lab) -> None:
    writer, *others = lab.nodes[:4]
    name = f"lab-isolation-{secrets.token_hex(4)}"
    written = ssh(lab, writer.name, f"echo x > /tmp/{name} && echo y > /var/lib/kubeedge/{name}")
    assert written.returncode == 0, written.stderr
    try:
        seen = f"ls /tmp/{name} /var/lib/kubeedge/{name}"
        assert lab.exec(writer.name, seen).returncode == 0
        for other in others:
            assert lab.exec(other.name, f"ls /tmp/{name}").returncode != 0
            assert lab.exec(other.name, f"ls /var/lib/kubeedge/{name}").returncode != 0
        assert not Path("/tmp", name).exists()
        assert not Path("/var/lib/kubeedge", name).exists()
    finally:
        lab.exec(writer.name, f"rm -f /tmp/{name} /var/lib/kubeedge/{name}")


@pytest.mark.lab
def test_nodes_have_their_own_mount_namespace_and_tmpfs(lab: Lab) -> None:
    node = lab.nodes[0]
    findmnt = "findmnt -n -o FSTYPE,SIZE"
    mounts = lab.exec(node.name, f"{findmnt} /tmp; {findmnt} /var/lib/kubeedge")

    assert mounts.stdout.split() == ["tmpfs", "512M", "tmpfs", "64M"]
    namespaces = {
        lab.exec(node.name, "readlink /proc/self/ns/mnt").stdout for node in lab.nodes[:3]
    }
    assert len(namespaces) == 3
    assert Path("/proc/self/ns/mnt").readlink().name not in namespaces


@pytest.mark.lab
@pytest.mark.parametrize("user", ["root", "edge"])
def test_password_login(lab: Lab, user: str) -> None:
    node = lab.nodes[2]
    client = password_login(node, user, lab.password)
    try:
        assert remote_output(client, "id -un; uname -m").split() == [user, node.arch]
    finally:
        client.close()


@pytest.mark.lab
def test_wrong_password_is_refused(lab: Lab) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        password_login(lab.nodes[0], "root", lab.password + "-wrong")


@pytest.mark.lab
def test_edge_user_logs_in_with_the_key_and_has_passwordless_sudo(lab: Lab) -> None:
    result = ssh(lab, lab.nodes[3].name, "id -un; echo $HOME; sudo -n id -u", user="edge")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["edge", "/home/edge", "0"]


@pytest.mark.lab
def test_a_node_takes_100_concurrent_logins(lab: Lab) -> None:
    node = lab.nodes[-1]
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.key_path))
    barrier = threading.Barrier(100)

    def login(_: int) -> str:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        barrier.wait(timeout=SSH_TIMEOUT)
        try:
            client.connect(
                node.address,
                node.port,
                username="root",
                pkey=key,
                look_for_keys=False,
                allow_agent=False,
                timeout=SSH_TIMEOUT,
                banner_timeout=SSH_TIMEOUT,
                auth_timeout=SSH_TIMEOUT,
            )
            return remote_output(client, "uname -m")
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(login, range(100)))

    assert answers == [f"{node.arch}\n"] * 100


@pytest.mark.lab
def test_lab_accounts_stay_inside_the_nodes(lab: Lab) -> None:
    host_shadow = Path("/etc/shadow").read_text()
    node_shadow = lab.exec(lab.nodes[0].name, "cat /etc/shadow").stdout
    lab_root_hash = next(line for line in node_shadow.splitlines() if line.startswith("root:"))

    assert lab_root_hash not in host_shadow
    assert "\nedge:" not in "\n" + Path("/etc/passwd").read_text()
    assert "\nedge:" in "\n" + lab.exec(lab.nodes[0].name, "cat /etc/passwd").stdout


@pytest.mark.lab
def test_session_lab_writes_an_upstream_batch_config(
    lab: Lab, lab_packages: dict[str, Path]
) -> None:
    assert lab.inventory_path is not None
    config = yaml.safe_load(lab.inventory_path.read_text())
    keadm = config["keadm"]

    assert set(config) == {"keadm", "nodes", "maxRunNum"}
    assert config["maxRunNum"] == 5
    assert keadm["download"] == {"enable": False}
    assert keadm["keadmVersion"] == "v1.22.0"
    assert keadm["archGroup"] == ["amd64", "arm64", "arm"]
    assert keadm["cmdTplArgs"]["cmd"] == "join"
    assert keadm["cmdTplArgs"]["token"]
    offline = Path(keadm["offlinePackageDir"])
    for arch, tarball in lab_packages.items():
        assert (offline / arch / tarball.name).is_file()
    assert [entry["nodeName"] for entry in config["nodes"]] == [node.name for node in lab.nodes]
    for entry, node in zip(config["nodes"], lab.nodes, strict=True):
        assert entry["keadmCmd"] == (
            "{{.cmd}} --cloudcore-ipport=127.0.0.1:10000 "
            f"--edgenode-name={node.name} --token={{{{.token}}}} --pre-run=./preflight.sh"
        )
        assert (Path(entry["copyFrom"]) / "preflight.sh").is_file()
        assert entry["ssh"] == {
            "ip": node.address,
            "username": "root",
            "port": 22,
            "auth": {
                "type": "privateKey",
                "privateKeyAuth": {"privateKeyPath": str(lab.key_path)},
            },
        }


# Small labs of their own, for what changes a lab.


@pytest.mark.lab
def test_stopped_sshd_stops_answering_and_starts_again(make_lab: LabFactory) -> None:
    small = make_lab(nodes=2)
    small.exec("node-002", "echo kept > /tmp/survives-sshd-restart")

    small.stop_sshd("node-002")
    assert [status.answering for status in small.status()] == [True, False]

    small.start_sshd("node-002")
    assert [status.answering for status in small.status()] == [True, True]
    assert ssh(small, "node-002", "cat /tmp/survives-sshd-restart").stdout == "kept\n"


@pytest.mark.lab
def test_frozen_sshd_accepts_tcp_but_sends_no_banner(make_lab: LabFactory) -> None:
    small = make_lab(nodes=1)
    node = small.nodes[0]

    small.freeze(node.name)
    try:
        with socket.create_connection((node.address, node.port), timeout=5):
            pass  # the kernel still completes the handshake
        assert read_banner(node.address, node.port, timeout=1.0) is None
    finally:
        small.thaw(node.name)
    assert read_banner(node.address, node.port, timeout=5.0) is not None


@pytest.mark.lab
def test_rotated_host_key_is_what_the_node_presents(make_lab: LabFactory) -> None:
    small = make_lab(nodes=1)
    node = small.nodes[0]
    before = small.host_public_key(node.name)

    after = small.rotate_host_key(node.name)

    assert after != before
    with socket.create_connection((node.address, node.port), timeout=SSH_TIMEOUT) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=SSH_TIMEOUT)
            presented = transport.get_remote_server_key()
        finally:
            transport.close()
    assert after.split()[:2] == [presented.get_name(), presented.get_base64()]


@pytest.mark.lab
def test_added_node_with_a_tiny_tmp_runs_out_of_space(make_lab: LabFactory) -> None:
    small = make_lab(nodes=1)

    tiny = small.add_node(arch="armv7l", tmp_size_mb=1)

    assert (tiny.name, tiny.address) == ("node-002", f"{small.subnet}.2")
    assert ssh(small, tiny.name, "uname -m").stdout == "armv7l\n"
    filled = small.exec(tiny.name, "head -c 2M /dev/zero > /tmp/too-big")
    assert filled.returncode != 0
    assert "No space left" in filled.stderr
    assert small.exec("node-001", "head -c 2M /dev/zero > /tmp/fits").returncode == 0


@pytest.mark.lab
def test_removed_node_is_gone(make_lab: LabFactory) -> None:
    small = make_lab(nodes=2)
    pids = recorded_pids(small.state_dir)

    small.remove_node("node-001")

    assert [node.name for node in small.nodes] == ["node-002"]
    assert [status.answering for status in small.status()] == [True]
    assert sum(running(pid) for pid in pids) == 2


@pytest.mark.lab
def test_down_stops_nodes_their_sessions_and_their_commands(make_lab: LabFactory) -> None:
    small = make_lab(nodes=2)
    pids = recorded_pids(small.state_dir)
    session = subprocess.Popen(
        small.ssh_command("node-001", "echo $$; exec sleep 600"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout is not None
        remote_sleep = int(session.stdout.readline())
        assert running(remote_sleep)

        small.down()

        assert not any(running(pid) for pid in [*pids, remote_sleep])
        assert session.wait(timeout=SSH_TIMEOUT) != 0
        assert not (small.state_dir / "lab.json").exists()
    finally:
        session.kill()
        session.wait()


@pytest.mark.lab
def test_up_again_replaces_the_previous_lab(make_lab: LabFactory) -> None:
    small = make_lab(nodes=2)
    old_pids = recorded_pids(small.state_dir)

    replacement = Lab(small.state_dir)
    try:
        replacement.up(1)

        assert not any(running(pid) for pid in old_pids)
        assert [node.name for node in Lab(small.state_dir).nodes] == ["node-001"]
        assert all(running(pid) for pid in recorded_pids(small.state_dir))
    finally:
        replacement.down()


@pytest.mark.lab
def test_a_second_lab_on_a_taken_subnet_is_refused(make_lab: LabFactory, tmp_path: Path) -> None:
    first = make_lab(nodes=1)
    intruder = Lab(tmp_path / "intruder", first.subnet)

    with pytest.raises(LabError, match="already in use"):
        intruder.up(1)

    assert [status.answering for status in first.status()] == [True]
    assert intruder.nodes == []


# Lab tests skip where no lab can run, but never under CI.


@pytest.mark.lab
@pytest.mark.parametrize(
    ("ci", "outcome", "exit_code"), [("false", "1 skipped", 0), ("true", "1 error", 1)]
)
def test_lab_tests_skip_for_non_root_except_under_ci(ci: str, outcome: str, exit_code: int) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    result = subprocess.run(
        [
            *nobody,
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"),
            "tests/test_lab.py::test_nodes_are_named_addressed_and_arched_in_order",
        ],
        cwd=REPO,
        env={**os.environ, "CI": ci, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert outcome in result.stdout, result.stdout + result.stderr
    assert "the lab needs root" in result.stdout
    assert result.returncode == exit_code


# The command line, end to end.


def lab_cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", *args],
        cwd=REPO,
        env={**os.environ, "KENORNIR_LAB_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.lab
def test_cli_up_status_exec_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    inventory = tmp_path / "inventory" / "lab.yaml"
    with leased_subnet() as subnet:
        up = lab_cli(
            *("up", "--nodes", "20", "--arch-mix", "--subnet", subnet),
            *("--package-size-mb", "2", "--inventory", str(inventory)),
            state_dir=state_dir,
        )
        try:
            assert up.returncode == 0, up.stderr
            table = [line.split() for line in up.stdout.splitlines() if line.startswith("node-")]
            assert table[2] == ["node-003", f"{subnet}.3:22", "armv7l", "coreutils"]
            assert len(table) == 20
            pids = recorded_pids(state_dir)
            assert len(pids) == 40

            lab = Lab(state_dir)
            for node in lab.nodes[:6]:
                assert ssh(lab, node.name, "uname -m").stdout == f"{node.arch}\n"

            def node_exec(name: str, command: str) -> subprocess.CompletedProcess[str]:
                return lab_cli("exec", name, "--", command, state_dir=state_dir)

            assert node_exec("node-005", "echo hi > /tmp/cli-mark").returncode == 0
            assert node_exec("node-005", "cat /tmp/cli-mark").stdout == "hi\n"
            assert node_exec("node-006", "cat /tmp/cli-mark").returncode != 0
            assert not Path("/tmp/cli-mark").exists()

            status = lab_cli("status", state_dir=state_dir)
            assert status.returncode == 0, status.stdout
            assert "20/20 nodes answering" in status.stdout

            config = yaml.safe_load(inventory.read_text())
            assert len(config["nodes"]) == 20
            offline = Path(config["keadm"]["offlinePackageDir"])
            tarball = offline / "arm" / "keadm-v1.22.0-linux-arm.tar.gz"
            assert keadm_member_digest(tarball)[1] == 2 * 2**20
        finally:
            down = lab_cli("down", state_dir=state_dir)
        assert down.returncode == 0, down.stderr
        assert not any(running(pid) for pid in pids)
        assert lab_cli("status", state_dir=state_dir).returncode == 1
