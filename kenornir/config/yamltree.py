"""The composed YAML tree as the reader sees it: tags by meaning, what a node is (for errors that
say "got a list"), unset values and `<<` merge keys.

The reader walks nodes, not loaded Python values, because only nodes keep the line and the key
an error has to name, and because Go's yaml.v2 (upstream keadm) reads scalars by the target
field's type, not by the YAML tag.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "merge")
)
# Go's yaml.v2 hands any scalar to a string field as its text: `keadmVersion: 1.20` stays "1.20"
# and `password: 123456` works, so these tags are read as text too. Booleans are not: a bare
# `yes` in a password is more likely a mistake than a password.
TEXT_TAGS = (STR, INT, FLOAT, _TAG + "timestamp")


def kind_of(node: Node) -> str:
    """What a node holds, as an error message names it ("got a list")."""
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    kinds = {STR: "text", INT: "a number", FLOAT: "a number", BOOL: "a boolean"}
    return kinds.get(node.tag, "nothing" if node.tag == NULL else f"a {node.tag} value")


def is_unset(node: Node | None) -> bool:
    """A key left out or written without a value (`key:` or `key: null`)."""
    return node is None or (isinstance(node, ScalarNode) and node.tag == NULL)


def merged_entries(node: MappingNode) -> list[tuple[Node, Node]]:
    """The entries a mapping takes from its `<<` merge keys, without changing the node.

    Raises:
        ValueError: a merge key's value is not a mapping or a list of mappings.
    """
    entries: list[tuple[Node, Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE:
            continue
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        # Of several merged mappings the earlier ones win: add them last.
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                raise ValueError("merge source is not a mapping")
            entries += merged_entries(source)
            entries += [entry for entry in source.value if entry[0].tag != MERGE]
    return entries
