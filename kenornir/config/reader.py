"""Reading the YAML: the composed tree walked with line-exact errors, merge keys, empty strings
as unset, `${NAME}` from the environment, and every value read as fields.SECTIONS declares it."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kenornir.arch import keadm_arch
from kenornir.config.fields import SECTIONS, Field, keys_of

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _MERGE = (
    _TAG + name for name in ("str", "int", "float", "bool", "null", "merge")
)
# Go's yaml.v2 hands any scalar to a string field as its text: `keadmVersion: 1.20` stays "1.20"
# and `password: 123456` works, so these tags are read as text too. Booleans are not: a bare
# `yes` in a password is more likely a mistake than a password.
_TEXT_TAGS = (_STR, _INT, _FLOAT, _TAG + "timestamp")

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_:.-]*>")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def kind_of(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    kinds = {_STR: "text", _INT: "a number", _FLOAT: "a number", _BOOL: "a boolean"}
    return kinds.get(node.tag, "nothing" if node.tag == _NULL else f"a {node.tag} value")


def _merged_entries(node: MappingNode) -> list[tuple[Node, Node]]:
    """The entries a mapping takes from its `<<` merge keys, without changing the node.

    Raises:
        ValueError: a merge key's value is not a mapping or a list of mappings.
    """
    entries: list[tuple[Node, Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            continue
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        # Of several merged mappings the earlier ones win: add them last.
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                raise ValueError("merge source is not a mapping")
            entries += _merged_entries(source)
            entries += [entry for entry in source.value if entry[0].tag != _MERGE]
    return entries


def is_unset(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL)


def _suggestion(value: str, choices: Iterable[str]) -> str:
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


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
            inherited = _merged_entries(node)
        except (ValueError, RecursionError):
            self.fail(path, "has a `<<` merge key that is not a mapping (fix or expand it)")
            return None
        entries: dict[str, Node] = {}
        own_keys: set[str] = set()
        own_nodes = {id(key_node) for key_node, _ in node.value}
        for key_node, value_node in inherited + [e for e in node.value if e[0].tag != _MERGE]:
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
                    self.fail(child, self._unknown_key(key, section))
            else:
                # Keys written here override those merged in with `<<`, as in YAML.
                entries[key] = value_node
            if own:
                own_keys.add(key)
        return entries

    def section(self, node: Node | None, path: str, name: str) -> dict[str, Any] | None:
        """Every field of section `name` (fields.SECTIONS) read from the mapping at path, by key;
        None when the mapping is unset or not a mapping. Keys it does not know are errors."""
        entries = self.mapping(node, path, name)
        if entries is None:
            return None
        return {
            field.key: self.value(
                field, entries.get(field.key), f"{path}.{field.key}" if path else field.key
            )
            for field in SECTIONS[name]
        }

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

    @staticmethod
    def _unknown_key(key: str, section: str) -> str:
        homes = [name for name in SECTIONS if key in keys_of(name)]
        if homes:
            where = "at the top level" if homes[0] == "the top level" else f"under {homes[0]}"
            return f"unknown key here ('{key}' belongs {where}: check the indentation)"
        hint = _suggestion(key, keys_of(section))
        if hint:
            return f"unknown key{hint}"
        elsewhere = {known: name for name in SECTIONS for known in keys_of(name)}
        close = difflib.get_close_matches(key, list(elsewhere), n=1, cutoff=0.8)
        if close:
            return f"unknown key here (did you mean '{close[0]}', under {elsewhere[close[0]]}?)"
        return f"unknown key (expected one of: {', '.join(keys_of(section))})"

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
        if node.tag == _BOOL:
            self.fail(path, "must be text, got a boolean (put the value in quotes)")
            return None
        if node.tag not in _TEXT_TAGS:
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
        hint = _suggestion(value, choices) or (
            f" (did you mean '{alias}'?)" if alias in choices else ""
        )
        self.fail(path, f"{value!r} is not one of {', '.join(choices)}{hint}")
        return None

    def integer(self, node: Node | None, path: str) -> int | None:
        if node is None or is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == _INT:
            return self._constructor.construct_yaml_int(node)
        quoted = isinstance(node, ScalarNode) and node.tag == _STR
        hint = " (remove the quotes)" if quoted and str(node.value).strip().isdigit() else ""
        self.fail(path, f"must be a whole number, got {kind_of(node)}{hint}")
        return None

    def boolean(self, node: Node | None, path: str) -> bool | None:
        if node is None or is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return self._constructor.construct_yaml_bool(node)
        quoted = isinstance(node, ScalarNode) and node.tag == _STR
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
        written = Path(value).expanduser()
        resolved = Path(os.path.normpath(Path.cwd() / written))
        if not resolved.exists():
            self.fail(path, f"{value!r} does not exist ({self._relative_hint(written)})")
        elif directory and not resolved.is_dir():
            self.fail(path, f"{value!r} is not a directory (give a directory)")
        elif not directory and not resolved.is_file():
            self.fail(path, f"{value!r} is not a file (give a file)")
        elif not os.access(resolved, os.R_OK):
            self.fail(path, f"{value!r} is not readable (check its permissions)")
        else:
            return str(resolved)
        return None

    def _relative_hint(self, written: Path) -> str:
        if written.is_absolute():
            return "check the path"
        beside_config = self.config_dir / written
        if beside_config.exists():
            return (
                "relative paths start from the current directory, as in keadm batch; "
                "it exists relative to the config file: run from there or write "
                f"'{os.path.relpath(beside_config)}'"
            )
        return "relative paths start from the current directory, as in keadm batch"
