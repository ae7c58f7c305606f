"""Reading the YAML: the composed tree walked with line-exact errors, merge keys, empty strings
as unset, `${NAME}` from the environment, and every value read as fields.SECTIONS declares it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kenornir.arch import keadm_arch
from kenornir.config.fields import SECTIONS, Field, keys_of, suggestion, unknown_key
from kenornir.config.localpath import LocalPathProblem, existing_local_path
from kenornir.config.yamltree import (
    BOOL,
    INT,
    MERGE,
    STR,
    TEXT_TAGS,
    is_unset,
    kind_of,
    merged_entries,
)

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_:.-]*>")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Reader:
    """Walks the composed YAML tree, converting values by type and collecting every error."""

    def __init__(self, source: str, env: Mapping[str, str], config_dir: Path) -> None:
        self.source = source
        self.env = env
        self.config_dir = config_dir
        self.errors: list[str] = []
        self.failed: set[str] = set()
        self.environment_values: set[str] = set()
        self._constructor = SafeConstructor()

    def fail(self, path: str, message: str) -> None:
        self.failed.add(path)
        self.errors.append(f"{self.source}: {path or 'top level'}: {message}")

    def compose(self, text: str) -> Node | None:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "top level"
            problem = exc.problem or exc.context or "invalid YAML"
            self.errors.append(
                f"{self.source}: {where}: YAML syntax error: {problem} "
                "(check the indentation and quoting there)"
            )
            return None
        except yaml.YAMLError as exc:
            self.errors.append(f"{self.source}: top level: not valid YAML: {exc} (fix the file)")
            return None
        except RecursionError:
            self.errors.append(f"{self.source}: top level: nested too deeply (flatten the YAML)")
            return None
        if root is None:
            self.errors.append(
                f"{self.source}: top level: the file is empty "
                "(write a config; `kenornir gen-config` prints a sample)"
            )
        return root

    def mapping(self, node: Node | None, path: str, section: str | None) -> dict[str, Node] | None:
        """The entries of a mapping; `section` names its known keys (None: free-form keys)."""
        if node is None or is_unset(node):
            return None
        if not isinstance(node, MappingNode):
            self.fail(path, f"must be a mapping of keys to values, got {kind_of(node)}")
            return None
        try:
            inherited = merged_entries(node)
        except (ValueError, RecursionError):
            self.fail(path, "has a `<<` merge key that is not a mapping (fix or expand it)")
            return None
        entries: dict[str, Node] = {}
        own_keys: set[str] = set()
        own_nodes = {id(key_node) for key_node, _ in node.value}
        for key_node, value_node in inherited + [e for e in node.value if e[0].tag != MERGE]:
            if not isinstance(key_node, ScalarNode):
                self.fail(path, f"has a key that is {kind_of(key_node)} (keys must be text)")
                continue
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            own = id(key_node) in own_nodes
            if own and key in own_keys:
                self.fail(child, "appears twice (keep one)")
            elif section is not None and key not in keys_of(section):
                if key not in entries and child not in self.failed:
                    self.fail(child, unknown_key(key, section))
            else:
                # Keys written here override those merged in with `<<`, as in YAML.
                entries[key] = value_node
            if own:
                own_keys.add(key)
        return entries

    def section(self, node: Node | None, path: str, name: str) -> dict[str, Any] | None:
        """Every field of section `name` (fields.SECTIONS) read from the mapping at path, by key,
        its default when unset; None when the mapping is unset or not a mapping. Keys it does not
        know are errors."""
        entries = self.mapping(node, path, name)
        if entries is None:
            return None
        values: dict[str, Any] = {}
        for field in SECTIONS[name]:
            child = f"{path}.{field.key}" if path else field.key
            value = self.value(field, entries.get(field.key), child)
            values[field.key] = field.default if value is None else value
        return values

    def value(self, field: Field, node: Node | None, path: str) -> Any:
        """One field's value, read as its kind says (see fields.Kind)."""
        match field.kind:
            case "node":
                return node
            case "text":
                return self.text(node, path, what=field.what, required=field.required)
            case "secret":
                return self.secret_text(node, path, what=field.what, required=field.required)
            case "integer":
                return self.integer(node, path)
            case "boolean":
                return self.boolean(node, path)
            case "choice":
                return self.choice(node, path, field.choices, required=field.required)
            case "file" | "dir":
                directory = field.kind == "dir"
                return self.local_path(node, path, directory=directory, required=field.required)
            case "scripts":
                scripts = (
                    self.local_path(item, item_path, directory=False)
                    for item_path, item in self.items(node, path, single_allowed=True)
                )
                return tuple(script for script in scripts if script is not None)
            case "labels":
                return self.text_map(node, path, secret=False)[0]
            case "secret_map":
                return self.text_map(node, path, secret=True)

    def text(
        self,
        node: Node | None,
        path: str,
        *,
        what: str = "a value",
        required: bool = False,
        strip: bool = True,
    ) -> str | None:
        """A text value (`what` it should be serves the hints); empty means unset."""
        value = self._scalar_text(node, path)
        if value is not None and strip:
            value = value.strip()
        if value is not None and _PLACEHOLDER.fullmatch(value.strip()):
            self.fail(path, f"{value!r} is a placeholder (replace it with {what})")
            return None
        if not value:
            if required and path not in self.failed:
                self.fail(path, f"is required (set it to {what})")
            return None
        return value

    def _scalar_text(self, node: Node | None, path: str) -> str | None:
        if node is None or is_unset(node):
            return None
        if not isinstance(node, ScalarNode):
            self.fail(path, f"must be text, got {kind_of(node)}")
            return None
        if node.tag == BOOL:
            self.fail(path, "must be text, got a boolean (put the value in quotes)")
            return None
        if node.tag not in TEXT_TAGS:
            self.fail(path, f"must be text, got {kind_of(node)} (put the value in quotes)")
            return None
        return str(node.value)

    def secret_text(
        self, node: Node | None, path: str, *, what: str = "a value", required: bool = False
    ) -> str | None:
        """Text in which `${NAME}` is replaced by the environment variable NAME."""
        value = self.text(node, path, what=what, required=required, strip=False)
        if value is None:
            return None
        unset = sorted({name for name in _ENV_REFERENCE.findall(value) if name not in self.env})
        for name in unset:
            self.fail(
                path, f"environment variable {name} is not set (export it, or write the value)"
            )
        if unset:
            return None
        # The user put these in the environment to keep them out of the file: each is a secret,
        # whatever the key that reads it.
        self.environment_values.update(
            self.env[name] for name in _ENV_REFERENCE.findall(value) if self.env[name]
        )
        return _ENV_REFERENCE.sub(lambda match: self.env[match.group(1)], value)

    def choice(
        self, node: Node | None, path: str, choices: tuple[str, ...], *, required: bool = False
    ) -> str | None:
        what = f"one of {', '.join(choices)}"
        value = self.text(node, path, what=what, required=required)
        if value is None or value in choices:
            return value
        alias = keadm_arch(value)
        hint = suggestion(value, choices) or (
            f" (did you mean '{alias}'?)" if alias in choices else ""
        )
        self.fail(path, f"{value!r} is not one of {', '.join(choices)}{hint}")
        return None

    def integer(self, node: Node | None, path: str) -> int | None:
        if node is None or is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == INT:
            return self._constructor.construct_yaml_int(node)
        quoted = isinstance(node, ScalarNode) and node.tag == STR
        hint = " (remove the quotes)" if quoted and str(node.value).strip().isdigit() else ""
        self.fail(path, f"must be a whole number, got {kind_of(node)}{hint}")
        return None

    def boolean(self, node: Node | None, path: str) -> bool | None:
        if node is None or is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == BOOL:
            return self._constructor.construct_yaml_bool(node)
        quoted = isinstance(node, ScalarNode) and node.tag == STR
        hint = (
            " (remove the quotes)"
            if quoted and str(node.value).lower() in {"true", "false"}
            else ""
        )
        self.fail(path, f"must be true or false, got {kind_of(node)}{hint}")
        return None

    def items(
        self, node: Node | None, path: str, *, single_allowed: bool
    ) -> list[tuple[str, Node]]:
        """The entries of a list as (path, node); a lone scalar counts as a one-item list."""
        if node is None or is_unset(node):
            return []
        if isinstance(node, SequenceNode):
            return [(f"{path}[{index}]", item) for index, item in enumerate(node.value)]
        if single_allowed and isinstance(node, ScalarNode):
            return [(path, node)]
        self.fail(path, f"must be a list, got {kind_of(node)} (write it as [value, ...])")
        return []

    def text_map(
        self, node: Node | None, path: str, *, secret: bool
    ) -> tuple[dict[str, str], set[str]]:
        """A free-form mapping of text; returns the values and the keys whose value was bad."""
        values: dict[str, str] = {}
        bad: set[str] = set()
        for key, value_node in (self.mapping(node, path, None) or {}).items():
            child = f"{path}.{key}"
            value = self.secret_text(value_node, child) if secret else self.text(value_node, child)
            if value is not None:
                values[key] = value
            elif child in self.failed:
                bad.add(key)
        return values, bad

    def local_path(
        self, node: Node | None, path: str, *, directory: bool, required: bool = False
    ) -> str | None:
        """A local file or directory that must exist; relative to the working directory."""
        what = "a directory" if directory else "a file"
        value = self.text(node, path, what=what, required=required)
        return None if value is None else self.existing_path(value, path, directory=directory)

    def existing_path(self, value: str, path: str, *, directory: bool) -> str | None:
        try:
            return existing_local_path(value, directory=directory, config_dir=self.config_dir)
        except LocalPathProblem as problem:
            self.fail(path, str(problem))
            return None
