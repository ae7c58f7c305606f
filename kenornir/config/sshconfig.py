"""`--ssh-config FILE`: what an OpenSSH client config says of the nodes' addresses, filled in
where the batch config is silent.

Only a file named on the command line is read, never ~/.ssh/config by itself: a batch run as
root on every node must not depend on whatever the operator's own config holds. Its `Host`
blocks give HostName, User, Port, IdentityFile and ProxyJump for a node whose `ssh.ip` they
match; any of those the batch config writes itself (merge keys included) wins. The file's
values enter the YAML tree as if written there, so they are checked, and errors named, as any
other field.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kenornir.config.yamltree import INT, STR, merged_entries

MAP = "tag:yaml.org,2002:map"


def read_ssh_config(path: Path) -> paramiko.SSHConfig:
    """Parse the file; OSError when it cannot be read."""
    with path.open(encoding="utf-8") as source:
        return paramiko.SSHConfig.from_file(source)


def apply_ssh_config(root: Node, ssh_config: paramiko.SSHConfig) -> None:
    """Fill each `nodes[].ssh` mapping of root in from ssh_config, by its `ip`."""
    nodes = _value(root, "nodes")
    if not isinstance(nodes, SequenceNode):
        return
    for node in nodes.value:
        ssh = _value(node, "ssh")
        address = _value(ssh, "ip")
        if isinstance(ssh, MappingNode) and isinstance(address, ScalarNode):
            _fill(ssh, ssh_config.lookup(address.value))


def _fill(ssh: MappingNode, found: paramiko.SSHConfigDict) -> None:
    identity_files: str | list[str] = found.get("identityfile") or []  # a list from lookup
    written = {key for key in ("ip", "username", "port", "auth", "proxyJump") if _value(ssh, key)}
    additions: dict[str, Node] = {}
    if "hostname" in found:
        additions["ip"] = _text(found["hostname"])
    if "user" in found:
        additions["username"] = _text(found["user"])
    if "port" in found:
        additions["port"] = ScalarNode(INT, str(found["port"]))
    if isinstance(identity_files, list) and identity_files:
        key_path = str(Path(identity_files[0]).expanduser())
        key_auth = MappingNode(MAP, [(_text("privateKeyPath"), _text(key_path))])
        additions["auth"] = MappingNode(
            MAP,
            [(_text("type"), _text("privateKey")), (_text("privateKeyAuth"), key_auth)],
        )
    if found.get("proxyjump", "none").lower() != "none":
        additions["proxyJump"] = _text(found["proxyjump"])
    for key, value in additions.items():
        if key == "ip" or key not in written:
            _set(ssh, key, value, replace=key == "ip")


def _value(node: Node | None, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    try:
        entries = [*merged_entries(node), *node.value]
    except ValueError:
        return None  # the reader names the bad merge key
    found = [value for key_node, value in entries if key_node.value == key]
    return found[-1] if found else None


def _set(mapping: MappingNode, key: str, value: Node, *, replace: bool) -> None:
    """Set key in mapping; an `ip` is replaced (HostName of a Host alias), others only added."""
    if replace:
        for index, (key_node, _) in enumerate(mapping.value):
            if key_node.value == key:
                mapping.value[index] = (key_node, value)
                return
    mapping.value.append((_text(key), value))


def _text(value: str) -> ScalarNode:
    return ScalarNode(STR, value)
