"""Writes the upstream-format keadm batch config (inventory/lab.yaml) for a lab's nodes."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.lab.node import LabNode
from tests.lab.packages import DEFAULT_ARCHES, DEFAULT_VERSION

PREFLIGHT_SCRIPT = Path(__file__).with_name("preflight.sh")
CLOUDCORE = "127.0.0.1:10000"
MAX_RUN_NUM = 5


def write_lab_inventory(
    path: Path,
    nodes: Sequence[LabNode],
    key_path: Path,
    copy_from_dir: Path,
    offline_package_dir: Path,
    *,
    bastions: Mapping[str, tuple[str, int]] | None = None,
) -> Path:
    """Write the batch config: offline packages, root logins with the lab key, join per node.

    copy_from_dir is (re)filled with preflight.sh, which every node's keadm runs as --pre-run.
    The token is random per write: the fake keadm only rejects the literal "invalid".
    bastions maps each site to its bastion's (address, port): a site node gets ssh.proxyJump
    in the object form, one list per site that its nodes share (a YAML anchor and aliases).
    """
    copy_from_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PREFLIGHT_SCRIPT, copy_from_dir / PREFLIGHT_SCRIPT.name)
    jumps = {
        site: [jump_host(address, port, key_path.absolute())]
        for site, (address, port) in (bastions or {}).items()
    }
    entries = [
        node_entry(
            node.name,
            node.address,
            node.port,
            cmd=(
                f"{{{{.cmd}}}} --cloudcore-ipport={CLOUDCORE} --edgenode-name={node.name}"
                f" --token={{{{.token}}}} --pre-run=./{PREFLIGHT_SCRIPT.name}"
            ),
            key_path=key_path.absolute(),
            copy_from=copy_from_dir.absolute(),
            proxy_jump=jumps[node.site] if node.site is not None else None,
        )
        for node in nodes
    ]
    config = batch_config(
        entries,
        offline_package_dir.absolute(),
        cmd_tpl_args={"cmd": "join", "token": f"{secrets.token_hex(32)}.lab"},
        max_run_num=MAX_RUN_NUM,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# kenornir lab nodes, written by `python -m tests.lab up`; rewritten on every up.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, width=120))
    return path


def node_entry(
    name: str,
    address: str,
    port: int,
    *,
    cmd: str,
    key_path: Path | None = None,
    password: str | None = None,
    user: str = "root",
    copy_from: Path | None = None,
    proxy_jump: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `nodes[]` entry in upstream's shape: key login when key_path, else password login;
    a user other than root gets kenornir's `ssh.sudo`; proxy_jump is kenornir's ssh.proxyJump
    (the list object itself goes in, so nodes given the same list share it in the YAML)."""
    if key_path is not None:
        auth = {"type": "privateKey", "privateKeyAuth": {"privateKeyPath": str(key_path)}}
    else:
        auth = {"type": "password", "passwordAuth": {"password": password}}
    ssh: dict[str, Any] = {"ip": address, "username": user, "port": port, "auth": auth}
    if user != "root":
        ssh["sudo"] = True
    if proxy_jump is not None:
        ssh["proxyJump"] = proxy_jump
    entry: dict[str, Any] = {"nodeName": name, "keadmCmd": cmd, "ssh": ssh}
    if copy_from is not None:
        entry["copyFrom"] = str(copy_from)
    return entry


def jump_host(address: str, port: int, key_path: Path) -> dict[str, Any]:
    """One ssh.proxyJump hop in the object form: root with the lab key, like a node's ssh."""
    return {
        "ip": address,
        "port": port,
        "username": "root",
        "auth": {"type": "privateKey", "privateKeyAuth": {"privateKeyPath": str(key_path)}},
    }


def batch_config(
    nodes: Sequence[Mapping[str, Any]],
    offline_dir: Path,
    *,
    cmd_tpl_args: Mapping[str, str],
    arch_group: Sequence[str] = DEFAULT_ARCHES,
    max_run_num: int = MAX_RUN_NUM,
) -> dict[str, Any]:
    """An upstream-format batch config over nodes, with offline lab packages."""
    return {
        "keadm": {
            "download": {"enable": False},
            "keadmVersion": DEFAULT_VERSION,
            "archGroup": list(arch_group),
            "offlinePackageDir": str(offline_dir),
            "cmdTplArgs": dict(cmd_tpl_args),
        },
        "nodes": list(nodes),
        "maxRunNum": max_run_num,
    }
