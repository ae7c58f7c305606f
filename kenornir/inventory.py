"""KeadmBatchInventory: the Nornir inventory plugin that turns a batch config into hosts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nornir.core.inventory import ConnectionOptions, Host, Hosts, Inventory

from kenornir.config import BatchConfig, JumpHost, NodeConfig, load_config
from kenornir.secret import Secret

CONNECTION_PLUGIN = "kenornir_ssh"

logger = logging.getLogger(__name__)


class KeadmBatchInventory:
    """One Host per node; tasks read `host.data` and never the YAML.

    Usable by name: `InitNornir(inventory={"plugin": "KeadmBatchInventory",
    "options": {"config_file": PATH}})`, or with an already loaded `config=`.
    """

    def __init__(
        self,
        config_file: str | Path | None = None,
        config: BatchConfig | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        source = config if config is not None else config_file
        if source is None or (config is not None and config_file is not None):
            raise ValueError("KeadmBatchInventory takes exactly one of config_file and config")
        self.source: BatchConfig | str | Path = source
        self.env = env

    def load(self) -> Inventory:
        config = self.source
        if not isinstance(config, BatchConfig):
            config = load_config(config, env=self.env)
        hosts = Hosts({node.name: node_host(node, config) for node in config.nodes})
        logger.debug("inventory from %s: %d hosts", config.source, len(hosts))
        return Inventory(hosts=hosts)


def node_host(node: NodeConfig, config: BatchConfig) -> Host:
    """The Nornir host of one node, with its SSH extras and the data the tasks read."""
    auth = node.ssh.auth
    extras: dict[str, Any] = {"auth": auth.kind, "sudo": node.ssh.sudo}
    if auth.private_key_path is not None:
        extras["private_key_path"] = auth.private_key_path
    if auth.passphrase is not None:
        extras["passphrase"] = Secret(auth.passphrase)
    if node.ssh.proxy_jump:
        extras["proxy_jump"] = [jump_extras(jump) for jump in node.ssh.proxy_jump]
    return Host(
        name=node.name,
        hostname=node.ssh.ip,
        port=node.ssh.port,
        username=node.ssh.username,
        password=Secret(auth.password) if auth.password is not None else None,
        platform="linux",
        data=host_data(node, config),
        connection_options={CONNECTION_PLUGIN: ConnectionOptions(extras=extras)},
    )


def jump_extras(jump: JumpHost) -> dict[str, Any]:
    """One jump host as kenornir_ssh's `proxy_jump` extras take it (credentials as Secrets)."""
    auth = jump.auth
    extras: dict[str, Any] = {
        "hostname": jump.ip,
        "port": jump.port,
        "username": jump.username,
        "auth": auth.kind,
    }
    if auth.private_key_path is not None:
        extras["private_key_path"] = auth.private_key_path
    for key, secret in (("password", auth.password), ("passphrase", auth.passphrase)):
        if secret is not None:
            extras[key] = Secret(secret)
    return extras


def host_data(node: NodeConfig, config: BatchConfig) -> dict[str, Any]:
    """`host.data`: plain values, so Nornir filters such as F(labels__site=...) work and
    `json.dumps(nr.inventory.dict())` holds no credential: the command's tokens and the
    secrets to mask are Secrets, which read as masked text."""
    command = node.keadm_cmd
    if node.secrets:
        command = Secret(node.keadm_cmd, shown=node.keadm_cmd_masked)
    return {
        "labels": dict(node.labels),
        "keadm_cmd": command,
        "copy_from": node.copy_from,
        "keadm_bin_dir": node.keadm_bin_dir,
        "pre_run": list(node.pre_run),
        "post_run": list(node.post_run),
        "sudo": node.ssh.sudo,
        "arch_group": list(config.keadm.arch_group),
        "keadm_version": config.keadm.keadm_version,
        "max_run_num": config.max_run_num,
        "secrets": [Secret(value) for value in node.secrets],
    }
