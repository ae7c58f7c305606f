"""The kenornir_ssh connection plugin against real lab sshds: logins, exec, timeouts, SFTP."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenornir.connection import CommandInterrupted, KenornirSSH
from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab


def open_ssh(lab: Lab, tmp_path: Path, user: str = "root", **extras: object) -> KenornirSSH:
    node = lab.nodes[0]
    ssh = KenornirSSH()
    auth = extras.pop("auth", "privateKey")
    password = lab.password if auth == "password" else None
    settings = {"known_hosts": str(tmp_path / "known_hosts"), "auth": auth, **extras}
    if auth == "privateKey":
        settings.setdefault("private_key_path", str(lab.key_path))
    ssh.open(node.address, user, password, node.port, "linux", settings)
    return ssh


@pytest.fixture
def ssh(lab: Lab, tmp_path: Path) -> Iterator[KenornirSSH]:
    connection = open_ssh(lab, tmp_path)
    yield connection
    connection.close()


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa", "ed25519"])
def test_key_types_with_and_without_passphrase(lab: Lab, tmp_path: Path, key_type: str) -> None:
    for passphrase in ("", "s3cret phrase"):
        key = tmp_path / f"id_{key_type}_{len(passphrase)}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(key)], check=True
        )
        public = key.with_suffix(".pub").read_text().strip()
        lab.exec(lab.nodes[0].name, f"echo '{public}' >> /root/.ssh/authorized_keys")
        extras = {"private_key_path": str(key), "passphrase": passphrase or None}
        connection = open_ssh(lab, tmp_path, **extras)
        assert connection.run("id -u").stdout == "0\n"
        connection.close()


def test_ssh_agent_when_no_auth_is_given(lab: Lab, tmp_path: Path) -> None:
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if socket_path.exists():
                break
            time.sleep(0.1)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(lab.key_path)], env=env, check=True)
        os.environ["SSH_AUTH_SOCK"] = str(socket_path)
        try:
            connection = open_ssh(lab, tmp_path, auth="agent")
            assert connection.run("whoami").stdout == "root\n"
            connection.close()
        finally:
            del os.environ["SSH_AUTH_SOCK"]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)


def test_both_streams_are_read_as_they_come(ssh: KenornirSSH) -> None:
    lines: list[tuple[str, str]] = []
    # 2 MiB on stderr before stdout says anything: a reader draining stdout first would block.
    result = ssh.run(
        "head -c 2097152 /dev/zero | tr '\\0' 'e' | fold -w 1023 >&2; echo done; exit 7",
        on_line=lambda stream, line: lines.append((stream, line)),
    )
    assert result.exit_status == 7
    assert result.stdout == "done\n"
    assert sum(1 for stream, _ in lines if stream == "stderr") == 2097152 // 1023 + 1
    assert ("stdout", "done") in lines
    assert len(result.stderr) <= 256 * 1024 < 2097152
    assert result.dropped_bytes > 0


def test_non_utf8_output_is_escaped(ssh: KenornirSSH) -> None:
    result = ssh.run("printf 'caf\\xe9 \\xff\\n'")
    assert result.stdout == "caf\\xe9 \\xff\n"


def test_timeout_kills_the_remote_process_group(ssh: KenornirSSH, lab: Lab) -> None:
    result = ssh.run("sleep 300 & sleep 301; echo never", timeout=1)
    assert result.timed_out
    assert "never" not in result.stdout
    assert not any(c.startswith("sleep 30") for c in lab.processes(lab.nodes[0].name).values())


def test_stop_event_kills_the_remote_command(ssh: KenornirSSH, lab: Lab) -> None:
    ssh.stop_event = threading.Event()
    threading.Timer(0.5, ssh.stop_event.set).start()
    with pytest.raises(CommandInterrupted):
        ssh.run("sleep 302")
    assert not any(c.startswith("sleep 302") for c in lab.processes(lab.nodes[0].name).values())


def test_stdin_is_streamed_to_the_command(ssh: KenornirSSH) -> None:
    data = os.urandom(3 * 2**20)
    output = ssh.run("sha256sum", stdin=io.BytesIO(data))
    assert output.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_a_command_that_stops_reading_stdin_reports_its_own_failure(ssh: KenornirSSH) -> None:
    output = ssh.run(
        "head -c 10 >/dev/null; echo 'disk full' >&2; exit 3", stdin=io.BytesIO(bytes(64 * 2**20))
    )
    assert (output.exit_status, output.stderr.strip()) == (3, "disk full")


def test_aes_gcm_is_negotiated_with_openssh(ssh: KenornirSSH) -> None:
    transport = ssh.connection.get_transport()
    assert transport is not None
    assert transport.local_cipher == transport.remote_cipher == "aes128-gcm@openssh.com"


def test_a_command_that_leaves_a_child_holding_its_output_ends_with_its_exit(
    ssh: KenornirSSH, lab: Lab
) -> None:
    # A hook that starts a daemon (`nohup daemon &`) leaves it holding the command's output.
    result = ssh.run("sleep 304 & echo started; exit 3", timeout=60)
    left = [pid for pid, line in lab.processes(lab.nodes[0].name).items() if line == "sleep 304"]
    for pid in left:  # started by this test, stopped by it
        os.kill(pid, signal.SIGKILL)
    assert (result.exit_status, result.stdout, result.timed_out) == (3, "started\n", False)
    assert left, "the child was meant to outlive the command"


@pytest.mark.timeout(60)
def test_a_stop_reaches_an_upload_the_node_no_longer_reads(ssh: KenornirSSH, lab: Lab) -> None:
    # The command never reads its stdin: once SSH's window is full, sending waits forever.
    ssh.stop_event = threading.Event()
    threading.Timer(1.0, ssh.stop_event.set).start()
    with pytest.raises(CommandInterrupted):
        ssh.run("sleep 305", timeout=300, stdin=io.BytesIO(bytes(64 * 2**20)))
    assert not any(c.startswith("sleep 305") for c in lab.processes(lab.nodes[0].name).values())


def test_a_login_banner_is_not_the_commands_output_and_does_not_stop_a_stop(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1)
    name = lab.nodes[0].name
    lab.exec(name, "echo 'echo Welcome, authorized use only' > /root/.bashrc")
    ssh = open_ssh(lab, tmp_path)
    try:
        assert ssh.run("uname -m").stdout == "x86_64\n"
        ssh.stop_event = threading.Event()
        threading.Timer(1.0, ssh.stop_event.set).start()
        with pytest.raises(CommandInterrupted):
            ssh.run("sleep 306")
    finally:
        ssh.close()
    assert not any(c.startswith("sleep 306") for c in lab.processes(name).values())
