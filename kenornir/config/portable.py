"""One node's part of a batch config as YAML text, for a worker elsewhere (kenornir.distributed).

The text holds the config's top level and keadm section as written, and that node alone: every
`${NAME}` stays unresolved, so a secret kept in the environment is resolved by the worker from its
own environment and never travels. Paths in it (privateKeyPath, copyFrom, preRun scripts,
offlinePackageDir) are read on the worker. The worker validates the text as the controller did.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kenornir.config.model import BatchConfig, ConfigError
from kenornir.config.reader import Reader
from kenornir.config.sshconfig import apply_ssh_config, read_ssh_config


def node_texts(
    path: str | Path, config: BatchConfig, *, ssh_config: Path | None = None
) -> dict[str, str]:
    """Node name -> its part of the config file at path (config: that file, validated).

    Raises:
        ConfigError: the file changed since it was validated.
    """
    root = _composed(path, ssh_config)
    items = _node_items(root)
    if len(items) != len(config.nodes):
        raise ConfigError([f"{path}: changed while the run started (run it again)"])
    return {
        node.name: yaml.serialize(_with_nodes(root, [item]))
        for node, item in zip(config.nodes, items, strict=True)
    }


def travelling_secret_fields(text: str, secrets: Sequence[str]) -> list[str]:
    """The YAML paths of text whose written value holds one of secrets (`${NAME}` does not)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return []
    return [
        path
        for path, value in _scalars(root, "")
        if any(secret and secret in value for secret in secrets)
    ]


class WorkerEnvironment(Mapping[str, str]):
    """The controller's environment for a config run on workers: a `${NAME}` it lacks is left
    to the workers (the node texts keep `${NAME}` whatever this holds) and reads as itself."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.left_to_workers: set[str] = set()

    def __getitem__(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        self.left_to_workers.add(name)
        return f"${{{name}}}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def config_text(path: str | Path) -> str:
    """The config file's text, read again for the workers.

    Raises:
        ConfigError: it cannot be read now (moved, or not a file: a config made in Python).
    """
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [f"{path}: cannot be read for the workers: {reason} (a --broker run needs the file)"]
        ) from None


def _composed(path: str | Path, ssh_config: Path | None) -> Node:
    reader = Reader(str(path), {}, Path(path).parent)
    root = reader.compose(config_text(path))
    if root is None:
        raise ConfigError(reader.errors)
    if ssh_config is not None:
        apply_ssh_config(root, read_ssh_config(ssh_config))
    return root


def _node_items(root: Node) -> list[Node]:
    nodes = _entry(root, "nodes")
    return list(nodes.value) if isinstance(nodes, SequenceNode) else []


def _entry(root: Node, key: str) -> Node | None:
    if not isinstance(root, MappingNode):
        return None
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node if isinstance(value_node, Node) else None
    return None


def _with_nodes(root: Node, items: list[Node]) -> MappingNode:
    """A copy of the top-level mapping whose `nodes` list holds items only; the other entries
    are shared, not copied (the serializer writes a node reached twice once, as an anchor)."""
    assert isinstance(root, MappingNode)
    nodes = _entry(root, "nodes")
    assert isinstance(nodes, SequenceNode)
    kept = SequenceNode(nodes.tag, items, flow_style=False)
    entries = [(key, kept if value is nodes else value) for key, value in root.value]
    return MappingNode(root.tag, entries, flow_style=False)


def _scalars(node: Node, path: str, seen: set[int] | None = None) -> Iterator[tuple[str, str]]:
    """Every scalar of the tree with its YAML path (`nodes[0].ssh.ip`), where it is written: a
    node reached again through an alias is not walked again."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        yield path, str(node.value)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from _scalars(item, f"{path}[{index}]", seen)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            name = str(key.value) if isinstance(key, ScalarNode) else "?"
            yield from _scalars(value, f"{path}.{name}" if path else name, seen)
