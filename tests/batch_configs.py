"""Batch configs over lab nodes for the integration tests, written in upstream's format."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.lab import Lab
from tests.lab.inventory import batch_config
from tests.lab.inventory import node_entry as lab_node_entry

# The upstream docs' join command (KubeEdge batch-node docs), with the token from cmdTplArgs.
UPSTREAM_JOIN_CMD = (
    "{{.cmd}} --cloudcore-ipport=127.0.0.1:10000 --edgenode-name={{nodeName}} "
    "--token={{.token}} --pre-run=./install-containerd.sh"
)
LAB_TOKEN = "9f1c2bd0e8a44e6fa1b2c3d4e5f60718.eyJhbGciOiJSUzI1NiJ9.labtoken"
# The pre-run script the upstream docs ship through copyFrom; here it leaves a timestamped mark.
INSTALL_CONTAINERD = """#!/bin/bash
set -e
date +%s.%N > /var/lib/kubeedge/pre-run-mark
echo "containerd: already installed (lab)"
"""
EXTRA_FILE = "edge-config.env"


def copy_from_dir(root: Path) -> Path:
    """A copyFrom dir like the upstream docs': the containerd pre-run script and a config file."""
    directory = root / "copy-from"
    directory.mkdir(exist_ok=True)
    (directory / "install-containerd.sh").write_text(INSTALL_CONTAINERD)
    (directory / EXTRA_FILE).write_text("EDGE_SITE=lab\n")
    return directory


def node_entry(
    lab: Lab,
    name: str,
    *,
    cmd: str = UPSTREAM_JOIN_CMD,
    copy_from: Path | None = None,
    auth: str = "privateKey",
    user: str = "root",
    address: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One `nodes[]` entry for a lab node (or any loopback address) in upstream's shape."""
    node = lab.node(name) if address is None else None
    entry = lab_node_entry(
        name,
        node.address if node else str(address),
        node.port if node else 22,
        cmd=cmd,
        key_path=lab.key_path if auth == "privateKey" else None,
        password=lab.password,
        user=user,
        copy_from=copy_from,
    )
    entry.update(extra or {})
    return entry


def write_config(
    path: Path,
    nodes: Sequence[Mapping[str, Any]],
    offline_dir: Path,
    *,
    arch_group: Sequence[str] = ("amd64", "arm64", "arm"),
    max_run_num: int = 5,
    token: str = LAB_TOKEN,
) -> Path:
    config = batch_config(
        nodes,
        offline_dir,
        cmd_tpl_args={"cmd": "join", "token": token},
        arch_group=arch_group,
        max_run_num=max_run_num,
    )
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)  # it holds the token (and passwords): kenornir warns about open modes
    return path


def offline_dir_of(packages: Mapping[str, Path]) -> Path:
    """The offlinePackageDir holding `<arch>/keadm-...tar.gz` packages."""
    return next(iter(packages.values())).parent.parent


def run_python(
    argv: Sequence[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python ARGV` as an operator would, with HOME (so ~/.ssh/known_hosts and the package
    cache) inside cwd, output captured."""
    env = {**os.environ, "HOME": str(cwd), "XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
