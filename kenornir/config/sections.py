"""The config section by section: what the reader read (fields.SECTIONS) assembled into the model,
with the checks of single values that their kind alone cannot make."""

from __future__ import annotations

import re

from yaml.nodes import Node, SequenceNode

from kenornir.config.checks import NodeDraft, check_packages, check_uploads, finish_node
from kenornir.config.fields import DOWNLOAD, KEADM, NODE, TOP, defaults_of
from kenornir.config.model import (
    ARCHES,
    DEFAULT_MAX_RUN_NUM,
    SITE_NAME,
    SITE_NAME_RULE,
    BatchConfig,
    DownloadConfig,
    KeadmConfig,
)
from kenornir.config.reader import Reader
from kenornir.config.ssh import read_ssh
from kenornir.config.yamltree import is_unset, kind_of
from kenornir.template import masked_url

_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
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
        max_run_num=max_run_num or DEFAULT_MAX_RUN_NUM,  # 0 means the default too, as upstream
        source=reader.source,
        transfer=top["transfer"],
        environment_secrets=tuple(sorted(reader.environment_values)),
    )


def _read_keadm(reader: Reader, node: Node | None) -> tuple[KeadmConfig, dict[str, str], set[str]]:
    section = reader.section(node, KEADM, KEADM) or defaults_of(KEADM)
    download = reader.section(section["download"], DOWNLOAD, DOWNLOAD) or defaults_of(DOWNLOAD)
    url = download["url"]
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        shown = repr(masked_url(url))
        reader.fail(f"{DOWNLOAD}.url", f"{shown} is not an http(s) URL (write https://host/path)")
    version = section["keadmVersion"]
    if version is not None:
        written, version = version, version if version.startswith("v") else f"v{version}"
        if not _VERSION.fullmatch(version):
            reader.fail(
                f"{KEADM}.keadmVersion", f"{written!r} is not a version (write e.g. v1.20.0)"
            )
            version = None
    template_args, failed_args = section["cmdTplArgs"] or ({}, set())
    keadm = KeadmConfig(
        download=DownloadConfig(
            enable=download["enable"],
            url=url.rstrip("/") if url else None,
            verify_checksum=download["verifyChecksum"],
        ),
        keadm_version=version,
        arch_group=_read_arch_group(reader, section["archGroup"]),
        offline_package_dir=section["offlinePackageDir"],
        cmd_tpl_args=template_args,
        keadm_bin_dir=section["keadmBinDir"],
        pre_run=section["preRun"],
        post_run=section["postRun"],
    )
    return keadm, template_args, failed_args


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
        ssh=read_ssh(reader, fields["ssh"], f"{path}.ssh"),
        template=fields["keadmCmd"],
        copy_from=fields["copyFrom"],
        keadm_bin_dir=fields["keadmBinDir"] or keadm.keadm_bin_dir,
        labels=fields["labels"],
        pre_run=keadm.pre_run + fields["preRun"],
        post_run=keadm.post_run + fields["postRun"],
        arch=fields["arch"],
        site=_site(reader, f"{path}.site", fields["site"]),
    )
    check_uploads(reader, draft)
    return draft


def _site(reader: Reader, path: str, site: str | None) -> str | None:
    if site is not None and not SITE_NAME.fullmatch(site):
        reader.fail(path, f"{site!r} is not a site name ({SITE_NAME_RULE})")
        return None
    return site
