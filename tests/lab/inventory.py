"""Writes the upstream-format keadm batch config (inventory/lab.yaml) for a lab's nodes."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

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
) -> Path:
    """Write the batch config: offline packages, root logins with the lab key, join per node.

    copy_from_dir is (re)filled with preflight.sh, which every node's keadm runs as --pre-run.
    The token is random per write: the fake keadm only rejects the literal "invalid".
    """
    copy_from_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PREFLIGHT_SCRIPT, copy_from_dir / PREFLIGHT_SCRIPT.name)
    config = {
        "keadm": {
            "download": {"enable": False},
            "keadmVersion": DEFAULT_VERSION,
            "archGroup": list(DEFAULT_ARCHES),
            "offlinePackageDir": str(offline_package_dir.absolute()),
            "cmdTplArgs": {"cmd": "join", "token": f"{secrets.token_hex(32)}.lab"},
        },
        "nodes": [_node_entry(node, key_path, copy_from_dir) for node in nodes],
        "maxRunNum": MAX_RUN_NUM,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# kenornir lab nodes, written by `python -m tests.lab up`; rewritten on every up.\n"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, width=120))
    return path


def _node_entry(node: LabNode, key_path: Path, copy_from_dir: Path) -> dict[str, object]:
    return {
        "nodeName": node.name,
        "keadmCmd": (
            f"{{{{.cmd}}}} --cloudcore-ipport={CLOUDCORE} --edgenode-name={node.name}"
            f" --token={{{{.token}}}} --pre-run=./{PREFLIGHT_SCRIPT.name}"
        ),
        "copyFrom": str(copy_from_dir.absolute()),
        "ssh": {
            "ip": node.address,
            "username": "root",
            "port": node.port,
            "auth": {
                "type": "privateKey",
                "privateKeyAuth": {"privateKeyPath": str(key_path.absolute())},
            },
        },
    }
