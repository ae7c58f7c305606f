"""Faults at login: nothing listening, a frozen sshd, refused credentials, a changed host key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.faults.conftest import FaultLab, FaultRun

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

FAULTY = "node-001"


def assert_fault(run: FaultRun, status: str, stage: str, *reason_parts: str) -> str:
    """The faulty node's record has this status and stage and a reason naming every part."""
    record = run.record(FAULTY)
    assert (record["status"], record["stage"]) == (status, stage), record
    reason: str = record["reason"]
    for part in reason_parts:
        assert part in reason, record
    assert run.exit_code == 1
    return reason


def new_key(path: Path, passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "fault", "-f", str(path)],
        check=True,
    )
    return path


def authorize(faults: FaultLab, node: str, key: Path) -> None:
    public_key = key.with_suffix(".pub").read_text()
    added = faults.lab.exec(node, "cat >> /root/.ssh/authorized_keys", stdin=public_key)
    assert added.returncode == 0, added.stderr


def key_login(faults: FaultLab, key: Path, passphrase: str | None = None) -> dict[str, object]:
    entry = faults.entry(FAULTY)
    key_auth: dict[str, str] = {"privateKeyPath": str(key)}
    if passphrase is not None:
        key_auth["passphrase"] = passphrase
    entry["ssh"]["auth"] = {"type": "privateKey", "privateKeyAuth": key_auth}
    return entry


def test_nothing_listening_is_unreachable(fault_lab: FaultLab) -> None:
    fault_lab.lab.stop_sshd(FAULTY)
    config = fault_lab.config([fault_lab.entry(FAULTY), *fault_lab.healthy()])

    run = fault_lab.run(config, "refused")

    assert_fault(run, "unreachable", "connect", "connection refused")
    fault_lab.assert_healthy_ok(run)


def test_frozen_sshd_is_unreachable_after_the_connect_timeout(fault_lab: FaultLab) -> None:
    config = fault_lab.config([fault_lab.entry(FAULTY), *fault_lab.healthy()])
    fault_lab.lab.freeze(FAULTY)
    try:
        run = fault_lab.run(config, "frozen", "--connect-timeout", "2")
    finally:
        fault_lab.lab.thaw(FAULTY)

    reason = assert_fault(run, "unreachable", "connect", "within 2s")
    assert "banner" in reason or "no answer" in reason
    fault_lab.assert_healthy_ok(run)


def test_wrong_password_fails_at_connect(fault_lab: FaultLab) -> None:
    wrong = "not-the-lab-password-3141"
    fault_lab.secrets.append(wrong)
    entry = fault_lab.entry(FAULTY, auth="password")
    entry["ssh"]["auth"]["passwordAuth"]["password"] = wrong
    config = fault_lab.config([entry, *fault_lab.healthy()])

    run = fault_lab.run(config, "wrong-password")

    assert_fault(run, "failed", "connect", "password", "refused")
    fault_lab.assert_healthy_ok(run)


def test_key_the_node_does_not_know_fails_at_connect(fault_lab: FaultLab) -> None:
    stranger = new_key(fault_lab.workdir / "stranger")
    config = fault_lab.config([key_login(fault_lab, stranger), *fault_lab.healthy()])

    run = fault_lab.run(config, "wrong-key")

    assert_fault(run, "failed", "connect", str(stranger), "refused")
    fault_lab.assert_healthy_ok(run)


def test_encrypted_key_needs_its_passphrase(fault_lab: FaultLab) -> None:
    right, wrong = "right-passphrase-2718", "wrong-passphrase-1618"
    fault_lab.secrets += [right, wrong]
    key = new_key(fault_lab.workdir / "encrypted", passphrase=right)
    authorize(fault_lab, FAULTY, key)
    healthy = fault_lab.healthy()

    refused = fault_lab.run(
        fault_lab.config([key_login(fault_lab, key, wrong), *healthy], "wrong"), "wrong-passphrase"
    )
    missing = fault_lab.run(
        fault_lab.config([key_login(fault_lab, key), *healthy], "missing"), "no-passphrase"
    )
    accepted = fault_lab.run(
        fault_lab.config([key_login(fault_lab, key, right), *healthy], "right"), "right-passphrase"
    )

    assert_fault(refused, "failed", "connect", str(key), "passphrase")
    assert_fault(missing, "failed", "connect", str(key), "passphrase")
    fault_lab.assert_healthy_ok(refused)
    assert accepted.exit_code == 0
    assert set(accepted.statuses().values()) == {"ok"}


def test_changed_host_key_is_refused_unless_policy_ignore(fault_lab: FaultLab) -> None:
    config = fault_lab.config([fault_lab.entry(FAULTY), *fault_lab.healthy()])
    known_hosts = fault_lab.workdir / "known_hosts"
    assert fault_lab.run(config, "learn").exit_code == 0
    address = fault_lab.lab.node(FAULTY).address
    line = next(
        number
        for number, text in enumerate(known_hosts.read_text().splitlines(), start=1)
        if text.split()[0] == address
    )
    fault_lab.lab.rotate_host_key(FAULTY)
    learned = known_hosts.read_text()

    for policy in ("accept-new", "strict"):
        run = fault_lab.run(config, f"changed-{policy}", "--host-key-policy", policy)
        reason = assert_fault(run, "failed", "connect", str(known_hosts), f"line {line}")
        assert "changed" in reason
        fault_lab.assert_healthy_ok(run)
    ignored = fault_lab.run(config, "changed-ignore", "--host-key-policy", "ignore")

    assert known_hosts.read_text() == learned
    assert set(ignored.statuses().values()) == {"ok"}
    for log in (ignored.node_log(FAULTY), ignored.run_log):
        warning = next(text for text in log.splitlines() if "host key" in text)
        assert "changed" in warning and "ignore" in warning
