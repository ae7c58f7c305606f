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

from kenornir.config.ssh import JUMP_WORD
from kenornir.config.yamltree import INT, STR, merged_entries

MAP = "tag:yaml.org,2002:map"
SEQ = "tag:yaml.org,2002:seq"


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
            _fill(ssh, ssh_config.lookup(address.value), ssh_config)


def _fill(ssh: MappingNode, found: paramiko.SSHConfigDict, ssh_config: paramiko.SSHConfig) -> None:
    written = {key for key in ("ip", "username", "port", "auth", "proxyJump") if _value(ssh, key)}
    additions = _login_fields(found)
    if found.get("proxyjump", "none").lower() != "none":
        additions["proxyJump"] = _jump_hosts(found["proxyjump"], ssh_config)
    for key, value in additions.items():
        if key == "ip" or key not in written:
            _set(ssh, key, value, replace=key == "ip")


def _login_fields(found: paramiko.SSHConfigDict) -> dict[str, Node]:
    """ip, username, port and auth as a Host block gives them (HostName, User, Port,
    IdentityFile), in the shape of `ssh`."""
    fields: dict[str, Node] = {"ip": _text(found["hostname"])}
    if "user" in found:
        fields["username"] = _text(found["user"])
    if "port" in found:
        fields["port"] = ScalarNode(INT, str(found["port"]))
    identity_files: str | list[str] = found.get("identityfile") or []  # a list from lookup
    if isinstance(identity_files, list) and identity_files:
        key_path = str(Path(identity_files[0]).expanduser())
        key_auth = MappingNode(MAP, [(_text("privateKeyPath"), _text(key_path))])
        fields["auth"] = MappingNode(
            MAP, [(_text("type"), _text("privateKey")), (_text("privateKeyAuth"), key_auth)]
        )
    return fields


def _jump_hosts(proxy_jump: str, ssh_config: paramiko.SSHConfig) -> Node:
    """ProxyJump as OpenSSH reads it: each `[user@]host[:port]` may name a Host block of the
    same file, whose HostName, User, Port and IdentityFile it then takes (a user or port written
    in ProxyJump wins). The objects form of proxyJump; the text as written when a word is not
    of that shape (the reader then says what is wrong with it)."""
    hops = []
    for word in proxy_jump.split(","):
        match = JUMP_WORD.fullmatch(word.strip())
        if match is None:
            return _text(proxy_jump)
        host = match["ipv6"] or match["host"]
        fields = _login_fields(ssh_config.lookup(host))
        if match["user"]:
            fields["username"] = _text(match["user"])
        if match["port"]:
            fields["port"] = ScalarNode(INT, match["port"])
        hops.append(MappingNode(MAP, [(_text(key), value) for key, value in fields.items()]))
    return SequenceNode(SEQ, hops)


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
