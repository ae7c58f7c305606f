"""A node's ssh section (address, login, sudo, auth) and its jump hosts, assembled from what the
reader read (fields.SSH, JUMP, AUTH, ...), with the checks a value's kind alone cannot make."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from yaml.nodes import Node, SequenceNode

from kenornir.config.fields import AUTH, JUMP, KEY_AUTH, PASSWORD_AUTH, SSH
from kenornir.config.model import DEFAULT_SSH_PORT, JumpHost, SSHAuth, SSHConfig
from kenornir.config.reader import Reader
from kenornir.config.yamltree import is_unset

_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
# OpenSSH's ProxyJump word: [user@]host[:port], an IPv6 host in brackets.
JUMP_WORD = re.compile(
    r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?"
)


def read_ssh(reader: Reader, node: Node | None, path: str) -> SSHConfig | None:
    """The node's ssh section; None when it is missing or wrong (reported)."""
    fields = reader.section(node, path, SSH)
    if fields is None:
        if path not in reader.failed:
            reader.fail(path, "is required (give ip, username and auth)")
        return None
    reachable = _check_address(reader, fields, path)
    auth = _read_auth(reader, fields["auth"], f"{path}.auth")
    jumps = _read_proxy_jump(reader, fields["proxyJump"], f"{path}.proxyJump", auth)
    if not reachable or fields["username"] is None or auth is None or jumps is None:
        return None
    return SSHConfig(
        ip=fields["ip"],
        username=fields["username"],
        port=fields["port"],
        auth=auth,
        sudo=fields["sudo"],
        proxy_jump=jumps,
    )


def _check_address(reader: Reader, fields: dict[str, Any], path: str) -> bool:
    """Whether ip (required) is an IP address or host name. A port out of range is reported too
    but leaves the rest to be checked: the config fails either way."""
    ip, port = fields["ip"], fields["port"]
    if ip is not None and not _is_address(ip):
        reader.fail(
            f"{path}.ip",
            f"{ip!r} is not an IP address or host name (write e.g. 192.168.1.10 or edge-1.lan)",
        )
    if not 1 <= port <= 65535:
        reader.fail(f"{path}.port", f"{port} is not a port number (use 1 to 65535)")
    return ip is not None and f"{path}.ip" not in reader.failed


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        # All-numeric names like 300.1.1.1 are mistyped addresses, not host names.
        return not re.fullmatch(r"[0-9.]+", value) and bool(_HOST_NAME.fullmatch(value))
    return True


def _read_proxy_jump(
    reader: Reader, node: Node | None, path: str, node_auth: SSHAuth | None
) -> tuple[JumpHost, ...] | None:
    """The jump hosts, outermost first: OpenSSH's `user@host[:port],...` (logging in with the
    node's own key, else ssh-agent), or a list of objects shaped like ssh (ip, port, username,
    auth). None when any is wrong (reported)."""
    if is_unset(node):
        return ()
    if isinstance(node, SequenceNode):
        read = [_read_jump(reader, item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        listed = [jump for jump in read if jump is not None]
        return tuple(listed) if len(listed) == len(read) else None
    text = reader.text(node, path, what="user@host[:port][,user@host[:port]...]")
    if text is None:
        return None
    key_auth = node_auth if node_auth is not None and node_auth.kind == "privateKey" else None
    jumps: list[JumpHost] = []
    for word in text.split(","):
        match = JUMP_WORD.fullmatch(word.strip())
        host = match and (match["ipv6"] or match["host"])
        port = int(match["port"] or DEFAULT_SSH_PORT) if match else 0
        if not match or not host or not _is_address(host) or not 1 <= port <= 65535:
            reader.fail(path, f"{word.strip()!r} is not user@host[:port] (e.g. ops@10.0.0.1:2222)")
            return None
        if not match["user"]:
            reader.fail(path, f"{word.strip()!r} names no user (write user@{word.strip()})")
            return None
        jumps.append(JumpHost(host, port, match["user"], key_auth or SSHAuth(kind="agent")))
    return tuple(jumps)


def _read_jump(reader: Reader, node: Node, path: str) -> JumpHost | None:
    fields = reader.section(node, path, JUMP)
    if fields is None:
        if path not in reader.failed:
            reader.fail(path, "is empty (give ip and username, and auth unless ssh-agent logs in)")
        return None
    reachable = _check_address(reader, fields, path)
    auth = _read_auth(reader, fields["auth"], f"{path}.auth")
    if not reachable or fields["username"] is None or auth is None:
        return None
    return JumpHost(fields["ip"], fields["port"], fields["username"], auth)


def _read_auth(reader: Reader, node: Node | None, path: str) -> SSHAuth | None:
    """The login: password or private key as `type` says; ssh-agent when auth is left out."""
    if is_unset(node):
        return SSHAuth(kind="agent")
    fields = reader.section(node, path, AUTH)
    if fields is None:
        return None
    kind = fields["type"]
    if kind is None:
        return None
    wanted, other = (
        ("passwordAuth", "privateKeyAuth")
        if kind == "password"
        else ("privateKeyAuth", "passwordAuth")
    )
    if not is_unset(fields[other]):
        reader.fail(f"{path}.{other}", f"is set but type is {kind} (remove it, or change type)")
    block_path = f"{path}.{wanted}"
    block = reader.section(
        fields[wanted], block_path, PASSWORD_AUTH if kind == "password" else KEY_AUTH
    )
    if block is None:
        if block_path not in reader.failed:
            reader.fail(block_path, f"is required for type {kind} (add it under auth)")
        return None
    if kind == "password":
        password = block["password"]
        return None if password is None else SSHAuth(kind="password", password=password)
    key_path = block["privateKeyPath"]
    if key_path is None or f"{block_path}.passphrase" in reader.failed:
        return None
    return SSHAuth(kind="privateKey", private_key_path=key_path, passphrase=block["passphrase"])
