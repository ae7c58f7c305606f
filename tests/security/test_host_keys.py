"""Host keys as OpenSSH checks them: no type downgrade, @revoked honoured, known_hosts patterns.

The lab tests run the CLI against real sshd nodes; the others check known_hosts files written
here against real keys, through the same function the connection plugin calls.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko
import pytest

from kenornir.hostkeys import HostKeyError, HostKeyPolicyName, verify_host_key
from tests.faults.conftest import FaultLab, FaultRun

NODE = "node-001"
POLICIES: tuple[HostKeyPolicyName, ...] = ("accept-new", "strict", "ignore")


def public_key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def ecdsa_public_key(directory: Path) -> str:
    """A fresh ECDSA public key line ("ecdsa-sha2-nistp256 AAAA..."), made by ssh-keygen."""
    return public_key_line(generated_key(directory, "ecdsa"))


def refused_at_connect(run: FaultRun, *reason_parts: str) -> str:
    record = run.record(NODE)
    assert (record["status"], record["stage"]) == ("failed", "connect"), record
    reason: str = record["reason"]
    assert "\n" not in reason
    for part in reason_parts:
        assert part in reason, record
    assert run.exit_code == 1
    return reason


# On the lab: what a node presents, against what known_hosts holds.


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_node_presenting_another_key_type_than_the_known_one_is_refused(
    fault_lab: FaultLab,
) -> None:
    # node-001 has an ed25519 host key only; known_hosts says it has this ECDSA key.
    known_hosts = fault_lab.workdir / "known_hosts"
    address = fault_lab.lab.node(NODE).address
    known_hosts.write_text(f"# recorded earlier\n{address} {ecdsa_public_key(fault_lab.workdir)}\n")
    recorded = known_hosts.read_text()
    config = fault_lab.config([fault_lab.entry(NODE)])

    for policy in ("accept-new", "strict"):
        run = fault_lab.run(config, f"downgrade-{policy}", "--host-key-policy", policy)
        reason = refused_at_connect(run, str(known_hosts), "line 2 of", "changed")
        assert "ecdsa-sha2-nistp256" in reason
        assert run.statuses() == {NODE: "failed"}  # not unreachable: the node answered
        assert known_hosts.read_text() == recorded
    ignored = fault_lab.run(config, "downgrade-ignore", "--host-key-policy", "ignore")

    assert ignored.statuses() == {NODE: "ok"}
    assert known_hosts.read_text() == recorded
    warning = next(line for line in ignored.node_log(NODE).splitlines() if "host key" in line)
    assert "changed" in warning and "ignore" in warning and "line 2 of" in warning


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_node_with_a_known_ecdsa_key_logs_in_with_it_and_learns_no_other(
    fault_lab: FaultLab,
) -> None:
    ecdsa_key = fault_lab.lab.add_host_key(NODE, "ecdsa")  # beside its ed25519 key
    known_hosts = fault_lab.workdir / "known_hosts"
    address = fault_lab.lab.node(NODE).address
    known_hosts.write_text(f"{address} {ecdsa_key}\n")
    recorded = known_hosts.read_text()
    config = fault_lab.config([fault_lab.entry(NODE)])

    for policy in ("accept-new", "strict"):
        run = fault_lab.run(config, f"known-ecdsa-{policy}", "--host-key-policy", policy)

        assert run.statuses() == {NODE: "ok"}, run.record(NODE)
        assert known_hosts.read_text() == recorded  # no ed25519 key learned beside it
        assert "host key" not in run.node_log(NODE)


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_revoked_host_key_is_refused_under_every_policy(fault_lab: FaultLab) -> None:
    known_hosts = fault_lab.workdir / "known_hosts"
    address = fault_lab.lab.node(NODE).address
    node_key = " ".join(fault_lab.lab.host_public_key(NODE).split()[:2])
    known_hosts.write_text(f"# the node was compromised\n@revoked {address} {node_key}\n")
    recorded = known_hosts.read_text()
    config = fault_lab.config([fault_lab.entry(NODE)])

    for policy in POLICIES:
        run = fault_lab.run(config, f"revoked-{policy}", "--host-key-policy", policy)

        refused_at_connect(run, "revoked", f"line 2 of {known_hosts}")
        assert known_hosts.read_text() == recorded
        assert not fault_lab.lab.join_records(NODE)


# On known_hosts files: patterns, markers and types as OpenSSH writes and reads them.


def generated_key(directory: Path, key_type: str) -> paramiko.PKey:
    path = directory / f"id_{key_type}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return paramiko.PKey.from_path(path)


@pytest.fixture(scope="module")
def node_key(tmp_path_factory: pytest.TempPathFactory) -> paramiko.PKey:
    return generated_key(tmp_path_factory.mktemp("keys"), "ed25519")


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> paramiko.PKey:
    return generated_key(tmp_path_factory.mktemp("keys"), "ecdsa")


HASHED_NODE = paramiko.HostKeys.hash_host("10.0.0.7")
HASHED_NODE_PORT = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")

# (host field of the known_hosts line, name looked up, whether the line names it)
PATTERN_CASES = [
    ("10.0.0.7", "10.0.0.7", True),
    ("10.0.0.70", "10.0.0.7", False),
    ("edge-7.example,10.0.0.7", "10.0.0.7", True),
    ("10.0.0.7,edge-7.example", "edge-7.example", True),
    ("EDGE-7.Example", "edge-7.example", True),
    ("10.0.0.*", "10.0.0.7", True),
    ("10.0.0.?", "10.0.0.7", True),
    ("10.0.0.?", "10.0.0.70", False),
    ("10.*.7", "10.0.0.7", True),
    ("*", "10.0.0.7", True),
    ("10.0.0.*,!10.0.0.7", "10.0.0.7", False),
    ("!10.0.0.7,10.0.0.*", "10.0.0.7", False),
    ("10.0.0.*,!10.0.0.8", "10.0.0.7", True),
    ("!10.0.0.8", "10.0.0.7", False),  # a negation alone names nothing
    ("[10.0.0.7]:2222", "[10.0.0.7]:2222", True),
    ("[10.0.0.7]:2222", "10.0.0.7", False),
    ("10.0.0.7", "[10.0.0.7]:2222", False),
    ("[10.0.0.*]:2222", "[10.0.0.7]:2222", True),
    ("[10.0.0.7]:22*", "[10.0.0.7]:2222", True),
    (HASHED_NODE, "10.0.0.7", True),
    (HASHED_NODE, "10.0.0.8", False),
    (HASHED_NODE_PORT, "[10.0.0.7]:2222", True),
    (HASHED_NODE_PORT, "10.0.0.7", False),
    ("|1|bm90IGJhc2U2NA|xx", "10.0.0.7", False),
]


@pytest.mark.parametrize(("host_field", "host_name", "names_it"), PATTERN_CASES)
def test_known_hosts_patterns_name_hosts_as_openssh_does(
    tmp_path: Path, node_key: paramiko.PKey, host_field: str, host_name: str, names_it: bool
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{host_field} {public_key_line(node_key)}\n")

    if names_it:
        assert verify_host_key(known_hosts, "strict", host_name, node_key) is None
    else:
        with pytest.raises(HostKeyError, match="is not in"):
            verify_host_key(known_hosts, "strict", host_name, node_key)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_revoked_key_is_refused_even_when_also_known(
    tmp_path: Path, node_key: paramiko.PKey, policy: HostKeyPolicyName
) -> None:
    known_hosts = tmp_path / "known_hosts"
    line = public_key_line(node_key)
    known_hosts.write_text(f"10.0.0.7 {line}\n@revoked * {line}\n")

    with pytest.raises(HostKeyError) as refused:
        verify_host_key(known_hosts, policy, "10.0.0.7", node_key)

    assert f"revoked by line 2 of {known_hosts}" in str(refused.value)


def test_a_revoked_line_for_other_hosts_does_not_apply(
    tmp_path: Path, node_key: paramiko.PKey
) -> None:
    known_hosts = tmp_path / "known_hosts"
    line = public_key_line(node_key)
    known_hosts.write_text(f"10.0.0.7 {line}\n@revoked 10.0.0.8 {line}\n")

    assert verify_host_key(known_hosts, "strict", "10.0.0.7", node_key) is None


def test_a_cert_authority_line_makes_no_key_known(tmp_path: Path, node_key: paramiko.PKey) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"@cert-authority * {public_key_line(node_key)}\n")

    with pytest.raises(HostKeyError, match="is not in"):
        verify_host_key(known_hosts, "strict", "10.0.0.7", node_key)
    assert verify_host_key(known_hosts, "accept-new", "10.0.0.7", node_key) is None
    assert known_hosts.read_text().splitlines()[1] == f"10.0.0.7 {public_key_line(node_key)}"


@pytest.mark.parametrize("policy", ["accept-new", "strict"])
def test_a_key_of_another_type_than_every_known_one_is_a_changed_key(
    tmp_path: Path,
    node_key: paramiko.PKey,
    other_key: paramiko.PKey,
    policy: HostKeyPolicyName,
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"10.0.0.7 {public_key_line(other_key)}\n"
        f"10.0.0.8 {public_key_line(node_key)}\n"
        f"10.0.0.* {public_key_line(other_key)}\n"
    )
    recorded = known_hosts.read_text()

    with pytest.raises(HostKeyError) as refused:
        verify_host_key(known_hosts, policy, "10.0.0.7", node_key)

    message = str(refused.value)
    assert f"lines 1, 3 of {known_hosts}" in message
    assert "changed" in message and "ssh-ed25519" in message
    assert known_hosts.read_text() == recorded


def test_accept_new_learns_a_new_host_once(tmp_path: Path, node_key: paramiko.PKey) -> None:
    known_hosts = tmp_path / ".ssh" / "known_hosts"

    for _ in range(2):
        assert verify_host_key(known_hosts, "accept-new", "[10.0.0.7]:2222", node_key) is None

    assert known_hosts.read_text() == f"[10.0.0.7]:2222 {public_key_line(node_key)}\n"


def test_unreadable_lines_naming_the_host_are_reported(
    tmp_path: Path, node_key: paramiko.PKey
) -> None:
    known_hosts = tmp_path / "known_hosts"
    line = public_key_line(node_key)
    known_hosts.write_text(
        f"10.0.0.7 ssh-ed25519 not-base64!\n"
        f"@unheard-of 10.0.0.7 {line}\n"
        f"10.0.0.7 ecdsa-sha2-nistp256 {node_key.get_base64()}\n"  # blob of another type
        f"10.0.0.9 ssh-ed25519 not-base64!\n"
        f"10.0.0.7 {line}\n"
    )
    reported: list[str] = []

    assert verify_host_key(known_hosts, "strict", "10.0.0.7", node_key, reported.append) is None

    assert [message.split(" ignored: ")[0] for message in reported] == [
        f"line {number} of {known_hosts}" for number in (1, 2, 3)
    ]


def test_a_known_hosts_that_cannot_be_read_refuses_the_key(
    tmp_path: Path, node_key: paramiko.PKey
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.mkdir()

    with pytest.raises(HostKeyError, match=f"cannot read {known_hosts}"):
        verify_host_key(known_hosts, "accept-new", "10.0.0.7", node_key)
