"""The config section by section: what the reader read (fields.SECTIONS) assembled into the model,
with the checks of single values that their kind alone cannot make."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, TypeVar, cast

from yaml.nodes import Node, SequenceNode

from kenornir.config.checks import NodeDraft, check_packages, check_uploads, finish_node
from kenornir.config.fields import (
    AUTH,
    DOWNLOAD,
    JUMP,
    KEADM,
    KEY_AUTH,
    NODE,
    PASSWORD_AUTH,
    SSH,
    TOP,
)
from kenornir.config.model import (
    ARCHES,
    DEFAULT_MAX_RUN_NUM,
    DEFAULT_SSH_PORT,
    BatchConfig,
    DownloadConfig,
    JumpHost,
    KeadmConfig,
    SSHAuth,
    SSHConfig,
    TransferMode,
)
from kenornir.config.reader import Reader, is_unset, kind_of
from kenornir.template import masked_url

_T = TypeVar("_T")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_VERSION = re.compile(r"v[0-9][0-9A-Za-z.+_-]*")


def read_batch(reader: Reader, root: Node) -> BatchConfig | None:
    top = reader.section(root, "", TOP)
    if top is None:
        if is_unset(root):
            reader.fail("", "has no keadm and nodes (see `kenornir gen-config` for the format)")
        return None
    keadm, template_args, failed_args = _read_keadm(reader, top["keadm"])
    drafts = _read_nodes(reader, top["nodes"], keadm)
    max_run_num = top["maxRunNum"]
    if max_run_num is not None and max_run_num < 0:
        reader.fail(
            "maxRunNum", f"{max_run_num} is below 0 (0 or unset means {DEFAULT_MAX_RUN_NUM})"
        )
    keadm = check_packages(reader, keadm, drafts)
    nodes = [finish_node(reader, draft, keadm, template_args, failed_args) for draft in drafts]
    if reader.errors:
        return None
    return BatchConfig(
        keadm=keadm,
        nodes=tuple(node for node in nodes if node is not None),
        max_run_num=max_run_num or DEFAULT_MAX_RUN_NUM,
        source=reader.source,
        transfer=cast(TransferMode, top["transfer"] or "auto"),
        environment_secrets=tuple(sorted(reader.environment_values)),
    )


def _read_keadm(reader: Reader, node: Node | None) -> tuple[KeadmConfig, dict[str, str], set[str]]:
    section = reader.section(node, KEADM, KEADM) or {}
    download = reader.section(section.get("download"), DOWNLOAD, DOWNLOAD) or {}
    url = download.get("url")
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        shown = repr(masked_url(url))
        reader.fail(f"{DOWNLOAD}.url", f"{shown} is not an http(s) URL (write https://host/path)")
    version = section.get("keadmVersion")
    if version is not None:
        written, version = version, version if version.startswith("v") else f"v{version}"
        if not _VERSION.fullmatch(version):
            reader.fail(
                f"{KEADM}.keadmVersion", f"{written!r} is not a version (write e.g. v1.20.0)"
            )
            version = None
    template_args, failed_args = section.get("cmdTplArgs") or ({}, set())
    keadm = KeadmConfig(
        download=DownloadConfig(
            enable=_default(download.get("enable"), True),
            url=url.rstrip("/") if url else None,
            verify_checksum=_default(download.get("verifyChecksum"), True),
        ),
        keadm_version=version,
        arch_group=_read_arch_group(reader, section.get("archGroup")),
        offline_package_dir=section.get("offlinePackageDir"),
        cmd_tpl_args=template_args,
        keadm_bin_dir=section.get("keadmBinDir"),
        pre_run=section.get("preRun", ()),
        post_run=section.get("postRun", ()),
    )
    return keadm, template_args, failed_args


def _default(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _read_arch_group(reader: Reader, node: Node | None) -> tuple[str, ...]:
    arches: list[str] = []
    for path, item in reader.items(node, f"{KEADM}.archGroup", single_allowed=False):
        arch = reader.choice(item, path, ARCHES)
        if arch in arches:
            reader.fail(path, f"'{arch}' is listed twice (remove one)")
        elif arch is not None:
            arches.append(arch)
    return tuple(arches)


def _read_nodes(reader: Reader, node: Node | None, keadm: KeadmConfig) -> list[NodeDraft]:
    if node is None or is_unset(node):
        reader.fail("nodes", "is required (list the edge nodes; `kenornir gen-config` shows how)")
        return []
    if not isinstance(node, SequenceNode):
        reader.fail("nodes", f"must be a list of nodes, got {kind_of(node)} (start each with '- ')")
        return []
    if not node.value:
        reader.fail("nodes", "is empty (list at least one node)")
    read = (_read_node(reader, index, item, keadm) for index, item in enumerate(node.value))
    drafts = [draft for draft in read if draft is not None]
    seen: dict[str, int] = {}
    for draft in drafts:
        if draft.name is None:
            continue
        if draft.name in seen:
            reader.fail(
                f"nodes[{draft.index}].nodeName",
                f"'{draft.name}' is already the name of nodes[{seen[draft.name]}] "
                "(node names must be unique)",
            )
        seen.setdefault(draft.name, draft.index)
    return drafts


def _read_node(reader: Reader, index: int, node: Node, keadm: KeadmConfig) -> NodeDraft | None:
    path = f"nodes[{index}]"
    fields = reader.section(node, path, NODE)
    if fields is None:
        if is_unset(node):
            reader.fail(path, "is empty (give nodeName, keadmCmd and ssh)")
        return None
    name = fields["nodeName"]
    if name is not None and not _NODE_NAME.fullmatch(name):
        reader.fail(
            f"{path}.nodeName",
            f"{name!r} cannot be used as a file name (use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128)",
        )
        name = None
    draft = NodeDraft(
        index=index,
        name=name,
        ssh=_read_ssh(reader, fields["ssh"], f"{path}.ssh"),
        template=fields["keadmCmd"],
        copy_from=fields["copyFrom"],
        keadm_bin_dir=fields["keadmBinDir"] or keadm.keadm_bin_dir,
        labels=fields["labels"],
        pre_run=keadm.pre_run + fields["preRun"],
        post_run=keadm.post_run + fields["postRun"],
        arch=fields["arch"],
    )
    check_uploads(reader, draft)
    return draft


def _read_ssh(reader: Reader, node: Node | None, path: str) -> SSHConfig | None:
    fields = reader.section(node, path, SSH)
    if fields is None:
        if path not in reader.failed:
            reader.fail(path, "is required (give ip, username and auth)")
        return None
    ip, username = fields["ip"], fields["username"]
    if ip is not None and not _is_address(ip):
        reader.fail(
            f"{path}.ip",
            f"{ip!r} is not an IP address or host name (write e.g. 192.168.1.10 or edge-1.lan)",
        )
    port = _default(fields["port"], DEFAULT_SSH_PORT)
    if not 1 <= port <= 65535:
        reader.fail(f"{path}.port", f"{port} is not a port number (use 1 to 65535)")
    auth = _read_auth(reader, fields["auth"], f"{path}.auth")
    jumps = _read_proxy_jump(reader, fields["proxyJump"], f"{path}.proxyJump", auth)
    if ip is None or username is None or auth is None or f"{path}.ip" in reader.failed:
        return None
    if jumps is None:
        return None
    return SSHConfig(
        ip=ip,
        username=username,
        port=port,
        auth=auth,
        sudo=_default(fields["sudo"], False),
        proxy_jump=jumps,
    )


# OpenSSH's ProxyJump word: [user@]host[:port], an IPv6 host in brackets.
_JUMP_WORD = re.compile(
    r"(?:(?P<user>[^@\s]+)@)?(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?"
)


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
        match = _JUMP_WORD.fullmatch(word.strip())
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
    ip, username = fields["ip"], fields["username"]
    if ip is not None and not _is_address(ip):
        reader.fail(f"{path}.ip", f"{ip!r} is not an IP address or host name")
        return None
    port = _default(fields["port"], DEFAULT_SSH_PORT)
    if not 1 <= port <= 65535:
        reader.fail(f"{path}.port", f"{port} is not a port number (use 1 to 65535)")
        return None
    auth = _read_auth(reader, fields["auth"], f"{path}.auth")
    if ip is None or username is None or auth is None:
        return None
    return JumpHost(ip, port, username, auth)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        # All-numeric names like 300.1.1.1 are mistyped addresses, not host names.
        return not re.fullmatch(r"[0-9.]+", value) and bool(_HOST_NAME.fullmatch(value))
    return True


def _read_auth(reader: Reader, node: Node | None, path: str) -> SSHAuth | None:
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
    block: dict[str, Any] | None = reader.section(
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
