"""A site of nodes reachable only through its bastion, joined with proxyJump in OpenSSH's
string form, as objects, and through --ssh-config: one login to the bastion carries them all,
and a bastion that is down makes its nodes unreachable naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.batch_configs import node_entry, offline_dir_of, write_config
from tests.lab import Lab, LabFactory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

SITE = "north"


def kenornir(workdir: Path, config: Path, run: str, *args: str) -> dict[str, Any]:
    """Run the CLI on config; its report.json."""
    run_dir = workdir / run
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "kenornir", str(config), "--no-progress"),
            *("--run-dir", str(run_dir), "--known-hosts", str(workdir / "known_hosts")),
            *("--cache-dir", str(workdir / "cache"), *args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    report: dict[str, Any] = json.loads((run_dir / "report.json").read_text())
    report["stdout"] = completed.stdout
    return report


def site_entries(lab: Lab, proxy_jump: Any) -> list[dict[str, Any]]:
    entries = []
    for name in lab.site(SITE).node_names:
        entry = node_entry(lab, name, cmd="join --token={{.token}}")
        entry["ssh"]["proxyJump"] = proxy_jump
        entries.append(entry)
    return entries


def bastion_object(lab: Lab) -> list[dict[str, Any]]:
    site = lab.site(SITE)
    key = {"type": "privateKey", "privateKeyAuth": {"privateKeyPath": str(lab.key_path)}}
    return [
        {"ip": site.bastion_address, "port": site.bastion_port, "username": "root", "auth": key}
    ]


def assert_joined_with_one_login(lab: Lab, report: dict[str, Any], logins_before: int) -> None:
    statuses = {record["node"]: record["status"] for record in report["nodes"]}
    assert statuses == dict.fromkeys(lab.site(SITE).node_names, "ok"), report["stdout"]
    assert report["exit_code"] == 0
    # The three nodes' connections were channels of one shared bastion login.
    assert lab.bastion_logins(SITE) - logins_before == 1


def test_a_site_behind_its_bastion_is_joined_in_every_config_form(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=3, sites={SITE: 3})
    site = lab.site(SITE)
    offline = offline_dir_of(lab_packages)
    forms: dict[str, Any] = {
        "string": f"root@{site.bastion_address}:{site.bastion_port}",
        "objects": bastion_object(lab),
    }
    for form, proxy_jump in forms.items():
        lab.forget_joins()
        config = write_config(tmp_path / f"{form}.yaml", site_entries(lab, proxy_jump), offline)
        before = lab.bastion_logins(SITE)
        assert_joined_with_one_login(lab, kenornir(tmp_path, config, form), before)

    # --ssh-config: the batch config names Host aliases and says nothing of user, key or jump;
    # the jump host is an alias of the file too, with a block of its own, as OpenSSH reads it.
    lab.forget_joins()
    blocks = [
        f"Host bastion-{SITE}\n  HostName {site.bastion_address}\n  User root\n"
        f"  IdentityFile {lab.key_path}\n"
    ]
    entries = []
    for name in site.node_names:
        node = lab.node(name)
        blocks.append(
            f"Host {name}.{SITE}\n  HostName {node.address}\n  User root\n"
            f"  IdentityFile {lab.key_path}\n  ProxyJump bastion-{SITE}:{site.bastion_port}\n"
        )
        entries.append(
            {
                "nodeName": name,
                "keadmCmd": "join --token={{.token}}",
                "ssh": {"ip": f"{name}.{SITE}"},
            }
        )
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("\n".join(blocks))
    config = write_config(tmp_path / "aliases.yaml", entries, offline)
    before = lab.bastion_logins(SITE)
    report = kenornir(tmp_path, config, "ssh-config", "--ssh-config", str(ssh_config))
    assert_joined_with_one_login(lab, report, before)
    addresses = {record["node"]: record["address"] for record in report["nodes"]}
    assert addresses == {name: f"{lab.node(name).address}:22" for name in site.node_names}

    # The batch config's own fields win over the file's: a wrong user there is used.
    entries[0]["ssh"]["username"] = "nobody-here"
    config = write_config(tmp_path / "own-user.yaml", entries[:1], offline)
    report = kenornir(tmp_path, config, "own-user", "--ssh-config", str(ssh_config))
    record = report["nodes"][0]
    assert (record["status"], record["stage"]) == ("failed", "connect"), record
    assert "nobody-here" in record["reason"]


def test_a_bastion_that_is_down_makes_its_nodes_unreachable_naming_it(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=3, sites={SITE: 2})
    site = lab.site(SITE)
    direct = node_entry(lab, lab.nodes[0].name, cmd="join --token={{.token}}")
    config = write_config(
        tmp_path / "batch.yaml",
        [direct, *site_entries(lab, bastion_object(lab))],
        offline_dir_of(lab_packages),
    )
    lab.stop_bastion(SITE)

    report = kenornir(tmp_path, config, "down", "--retries", "0")

    records = {record["node"]: record for record in report["nodes"]}
    assert records[lab.nodes[0].name]["status"] == "ok"
    for name in site.node_names:
        record = records[name]
        assert (record["status"], record["stage"]) == ("unreachable", "connect"), record
        assert record["reason"].startswith(f"jump host root@{site.bastion_address}:22: "), record
    assert report["exit_code"] == 1
