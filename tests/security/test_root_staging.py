"""On sudo nodes root runs keadm and hook scripts from dirs only root may write, and checks
them right before they run: the login user's other processes cannot swap what runs as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import STAGING, FaultLab

pytestmark = pytest.mark.lab

NODE = "node-001"
# What any process of the login user would try between two runs: replace keadm and the preRun
# script by its own, and rewrite kenornir's notes so that they vouch for them.
SWAP = r"""
cd /tmp/kubeedge/keadm || exit 1
for file in keadm preflight.sh; do
    sha=$(cut -d' ' -f1 ".$file.kenornir") || exit 1
    printf '#!/bin/bash\ntouch /var/lib/kubeedge/PWNED\n' > "$file.new" || exit 1
    chmod 755 "$file.new" && mv -f "$file.new" "$file" || exit 1
    printf '%s %s 755\n' "$sha" "$(stat -c '%i %s %.9Y %.9Z' "$file")" > ".$file.kenornir" || exit 1
done
"""


def sudo_node_config(fault_lab: FaultLab, tmp_path: Path) -> Path:
    preflight = tmp_path / "preflight.sh"
    preflight.write_text("echo preflight ok\n")
    entry = fault_lab.entry(NODE, auth="password", user=fault_lab.lab.edge_user)
    return fault_lab.config([{**entry, "preRun": [str(preflight)]}, *fault_lab.healthy()])


def as_login_user(fault_lab: FaultLab, script: str) -> int:
    user = fault_lab.lab.edge_user
    return fault_lab.lab.exec(NODE, ["runuser", "-u", user, "--", "sh", "-c", script]).returncode


def test_login_user_cannot_swap_what_root_runs(fault_lab: FaultLab, tmp_path: Path) -> None:
    config = sudo_node_config(fault_lab, tmp_path)
    first = fault_lab.run(config, "first")
    assert first.record(NODE)["status"] == "ok", first.record(NODE)

    assert as_login_user(fault_lab, SWAP) != 0
    second = fault_lab.run(config, "second")

    assert second.record(NODE)["status"] == "ok", second.record(NODE)
    assert "stdout: preflight ok" in second.node_log(NODE)
    assert fault_lab.lab.exec(NODE, "ls /var/lib/kubeedge/PWNED").returncode != 0
    assert len(fault_lab.lab.join_records(NODE)) == 2
    owners = fault_lab.lab.exec(NODE, f"stat -c '%U %a' /tmp/kubeedge {STAGING} {STAGING}/*")
    assert set(owners.stdout.splitlines()) == {"root 755"}


def test_staging_dir_the_login_user_owns_is_refused_on_a_sudo_node(
    fault_lab: FaultLab, tmp_path: Path
) -> None:
    # Left behind by a run before root owned it (or planted): the login user may have swapped
    # anything in it already.
    assert as_login_user(fault_lab, f"mkdir -p {STAGING}") == 0
    uid = fault_lab.lab.exec(NODE, f"id -u {fault_lab.lab.edge_user}").stdout.strip()

    run = fault_lab.run(sudo_node_config(fault_lab, tmp_path), "planted")

    record = run.record(NODE)
    assert (record["status"], record["stage"]) == ("failed", "stage-dir"), record
    assert record["reason"] == (
        f"/tmp/kubeedge is owned by uid {uid}, not uid 0 that runs keadm; remove it"
    )
    assert not fault_lab.lab.join_records(NODE)
    fault_lab.assert_healthy_ok(run)


def test_a_shared_tmp_that_is_not_sticky_is_refused(fault_lab: FaultLab) -> None:
    # Anyone could rename the staging dirs out of a world-writable /tmp without the sticky bit.
    assert fault_lab.lab.exec(NODE, "chmod 0777 /tmp").returncode == 0
    config = fault_lab.config([fault_lab.entry(NODE), *fault_lab.healthy()])

    run = fault_lab.run(config, "open-tmp")

    record = run.record(NODE)
    assert (record["status"], record["stage"]) == ("failed", "stage-dir"), record
    assert record["reason"] == "/tmp is writable by others, not sticky; fix it: chmod +t /tmp"
    assert fault_lab.lab.exec(NODE, "test -e /tmp/kubeedge").returncode == 1
    fault_lab.assert_healthy_ok(run)
