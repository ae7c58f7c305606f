"""The batch config: typed immutable model, the one YAML loader with its validation, the sample."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kenornir.address import host_port
from kenornir.arch import KEADM_ARCHES, keadm_arch
from kenornir.shell import keadm_line, upload_name_problem
from kenornir.template import (
    MissingPlaceholders,
    TemplateProblem,
    mask_secrets,
    masked_url,
    render_command,
    secret_values,
    token_values,
    url_secrets,
)

STAGING_DIR = "/tmp/kubeedge/keadm"
DEFAULT_DOWNLOAD_BASE = "https://github.com/kubeedge/kubeedge/releases/download"
DEFAULT_MAX_RUN_NUM = 5
DEFAULT_SSH_PORT = 22
ARCHES = KEADM_ARCHES
AUTH_TYPES = ("password", "privateKey")
# How files reach nodes (--transfer): auto picks the stream where the node's userland allows.
TransferMode = Literal["auto", "stream", "sftp"]
TRANSFER_MODES: tuple[TransferMode, ...] = ("auto", "stream", "sftp")

AuthKind = Literal["password", "privateKey", "agent"]
_T = TypeVar("_T")


class ConfigError(Exception):
    """The config cannot be used; `errors` holds every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class SSHAuth:
    """How to log in: `agent` when the config has no auth block (keys from ssh-agent)."""

    kind: AuthKind
    password: str | None = None
    private_key_path: str | None = None
    passphrase: str | None = None


@dataclass(frozen=True)
class SSHConfig:
    ip: str
    username: str
    port: int
    auth: SSHAuth
    sudo: bool = False

    @property
    def address(self) -> str:
        return host_port(self.ip, self.port)


@dataclass(frozen=True)
class NodeConfig:
    """One edge node with its effective settings: the global keadm values are merged in."""

    name: str
    ssh: SSHConfig
    keadm_cmd_template: str
    keadm_cmd: str
    keadm_cmd_masked: str
    # Absolute local paths, resolved against the working directory as upstream does.
    copy_from: str | None
    pre_run: tuple[str, ...]
    post_run: tuple[str, ...]
    # The node's keadmBinDir, else keadm.keadmBinDir; None means keadm is uploaded.
    keadm_bin_dir: str | None
    labels: Mapping[str, str] = field(hash=False)  # a dict: left out of the hash
    # Upstream's own sample writes `arch` and upstream ignores it; kenornir checks it is prepared.
    arch: str | None
    secrets: tuple[str, ...]

    @property
    def work_dir(self) -> str:
        return self.keadm_bin_dir or STAGING_DIR

    @property
    def remote_command(self) -> str:
        return keadm_line(self.keadm_cmd, self.work_dir)

    @property
    def remote_command_masked(self) -> str:
        return keadm_line(self.keadm_cmd_masked, self.work_dir)


@dataclass(frozen=True)
class DownloadConfig:
    enable: bool
    # The base the tarballs are fetched from: download.url, else the GitHub release of the
    # version. None only when no keadm version is needed (every node has keadmBinDir).
    url: str | None
    verify_checksum: bool


@dataclass(frozen=True)
class KeadmConfig:
    download: DownloadConfig
    keadm_version: str | None
    arch_group: tuple[str, ...]
    offline_package_dir: str | None
    cmd_tpl_args: Mapping[str, str] = field(hash=False)  # a dict: left out of the hash
    keadm_bin_dir: str | None
    pre_run: tuple[str, ...]
    post_run: tuple[str, ...]

    def package_file_name(self, arch: str) -> str:
        return f"keadm-{self._version()}-linux-{arch}.tar.gz"

    def package_url(self, arch: str) -> str:
        return f"{self.download.url}/{self.package_file_name(arch)}"

    def offline_package_path(self, arch: str) -> Path:
        if self.offline_package_dir is None:
            raise ValueError("keadm.offlinePackageDir is not set")
        return Path(self.offline_package_dir, arch, self.package_file_name(arch))

    def _version(self) -> str:
        if self.keadm_version is None:
            raise ValueError("keadm.keadmVersion is not set: every node uses keadmBinDir")
        return self.keadm_version


@dataclass(frozen=True)
class BatchConfig:
    keadm: KeadmConfig
    nodes: tuple[NodeConfig, ...]
    max_run_num: int
    source: str
    transfer: TransferMode = "auto"
    # Every value read through `${NAME}`: secrets that are not in the file.
    environment_secrets: tuple[str, ...] = ()

    @property
    def needs_packages(self) -> bool:
        return any(node.keadm_bin_dir is None for node in self.nodes)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(sorted({secret for node in self.nodes for secret in node.secrets}))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> BatchConfig:
    """Load and validate a batch config file.

    Relative paths inside resolve against the working directory, like upstream's.

    Raises:
        ConfigError: with every problem found, each as `FILE: YAML.PATH: problem (what to do)`.
    """
    label = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"{label}: file not found (check the path)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{label}: is a directory (give the config file)"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: is not UTF-8 text (save it as UTF-8)"]) from None
    except OSError as exc:
        raise ConfigError([f"{label}: cannot be read: {exc.strerror} (check it)"]) from None
    return parse_config(text, source=label, config_dir=Path(path).parent, env=env)


def exposed_secrets_warning(path: str | Path, config: BatchConfig) -> str | None:
    """A warning when the config file spells out secrets and group or others may open it.

    Secrets read from `${NAME}` are not in the file and do not count. None when the file is
    private (no group/other permission bits) or holds no secret.
    """
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    written = set(config.secrets) - set(config.environment_secrets)
    if not mode & 0o077 or not any(secret in text for secret in written):
        return None
    return (
        f"{path} holds passwords or tokens and is open to group or others (mode {mode:04o}): "
        f"chmod 600 {path}, or write them as ${{NAME}} and set NAME in the environment"
    )


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    config_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> BatchConfig:
    """Validate config text; `config_dir` only serves hints about relative paths."""
    reader = _Reader(source, os.environ if env is None else env, config_dir or Path.cwd())
    root = reader.compose(text)
    config = _read_batch(reader, root) if root is not None else None
    if reader.errors or config is None:
        raise ConfigError(reader.errors)
    return config


# --- YAML walking -------------------------------------------------------------------------

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
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_VERSION = re.compile(r"v[0-9][0-9A-Za-z.+_-]*")

# Where every known key lives; also answers "this key belongs elsewhere" for misindented keys.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "the top level": ("keadm", "nodes", "maxRunNum", "transfer"),
    "keadm": (
        "download",
        "keadmVersion",
        "archGroup",
        "offlinePackageDir",
        "cmdTplArgs",
        "keadmBinDir",
        "preRun",
        "postRun",
    ),
    "keadm.download": ("enable", "url", "verifyChecksum"),
    "nodes[]": (
        "nodeName",
        "arch",
        "keadmCmd",
        "copyFrom",
        "keadmBinDir",
        "labels",
        "preRun",
        "postRun",
        "ssh",
    ),
    "nodes[].ssh": ("ip", "username", "port", "sudo", "auth"),
    "nodes[].ssh.auth": ("type", "passwordAuth", "privateKeyAuth"),
    "nodes[].ssh.auth.passwordAuth": ("password",),
    "nodes[].ssh.auth.privateKeyAuth": ("privateKeyPath", "passphrase"),
}


def _kind(node: Node) -> str:
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


def _is_unset(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL)


def _suggestion(value: str, choices: Iterable[str]) -> str:
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


class _Reader:
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
        if node is None or _is_unset(node):
            return None
        if not isinstance(node, MappingNode):
            self.fail(path, f"must be a mapping of keys to values, got {_kind(node)}")
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
                self.fail(path, f"has a key that is {_kind(key_node)} (keys must be text)")
                continue
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            own = id(key_node) in own_nodes
            if own and key in own_keys:
                self.fail(child, "appears twice (keep one)")
            elif section is not None and key not in _SECTIONS[section]:
                if key not in entries and child not in self.failed:
                    self.fail(child, self._unknown_key(key, section))
            else:
                # Keys written here override those merged in with `<<`, as in YAML.
                entries[key] = value_node
            if own:
                own_keys.add(key)
        return entries

    @staticmethod
    def _unknown_key(key: str, section: str) -> str:
        homes = [name for name, keys in _SECTIONS.items() if key in keys]
        if homes:
            where = "at the top level" if homes[0] == "the top level" else f"under {homes[0]}"
            return f"unknown key here ('{key}' belongs {where}: check the indentation)"
        hint = _suggestion(key, _SECTIONS[section])
        if hint:
            return f"unknown key{hint}"
        elsewhere = {known: name for name, keys in _SECTIONS.items() for known in keys}
        close = difflib.get_close_matches(key, list(elsewhere), n=1, cutoff=0.8)
        if close:
            return f"unknown key here (did you mean '{close[0]}', under {elsewhere[close[0]]}?)"
        return f"unknown key (expected one of: {', '.join(_SECTIONS[section])})"

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
        if node is None or _is_unset(node):
            return None
        if not isinstance(node, ScalarNode):
            self.fail(path, f"must be text, got {_kind(node)}")
            return None
        if node.tag == _BOOL:
            self.fail(path, "must be text, got a boolean (put the value in quotes)")
            return None
        if node.tag not in _TEXT_TAGS:
            self.fail(path, f"must be text, got {_kind(node)} (put the value in quotes)")
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
        if node is None or _is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == _INT:
            return self._constructor.construct_yaml_int(node)
        quoted = isinstance(node, ScalarNode) and node.tag == _STR
        hint = " (remove the quotes)" if quoted and str(node.value).strip().isdigit() else ""
        self.fail(path, f"must be a whole number, got {_kind(node)}{hint}")
        return None

    def boolean(self, node: Node | None, path: str) -> bool | None:
        if node is None or _is_unset(node):
            return None
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            return self._constructor.construct_yaml_bool(node)
        quoted = isinstance(node, ScalarNode) and node.tag == _STR
        hint = (
            " (remove the quotes)"
            if quoted and str(node.value).lower() in {"true", "false"}
            else ""
        )
        self.fail(path, f"must be true or false, got {_kind(node)}{hint}")
        return None

    def items(
        self, node: Node | None, path: str, *, single_allowed: bool
    ) -> list[tuple[str, Node]]:
        """The entries of a list as (path, node); a lone scalar counts as a one-item list."""
        if node is None or _is_unset(node):
            return []
        if isinstance(node, SequenceNode):
            return [(f"{path}[{index}]", item) for index, item in enumerate(node.value)]
        if single_allowed and isinstance(node, ScalarNode):
            return [(path, node)]
        self.fail(path, f"must be a list, got {_kind(node)} (write it as [value, ...])")
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


# --- the config, section by section -------------------------------------------------------


@dataclass(frozen=True)
class _NodeDraft:
    """What was read of one node before its command is rendered."""

    index: int
    name: str | None
    ssh: SSHConfig | None
    template: str | None
    copy_from: str | None
    keadm_bin_dir: str | None
    labels: dict[str, str]
    pre_run: tuple[str, ...]
    post_run: tuple[str, ...]
    arch: str | None


def _read_batch(reader: _Reader, root: Node) -> BatchConfig | None:
    top = reader.mapping(root, "", "the top level")
    if top is None:
        if _is_unset(root):
            reader.fail("", "has no keadm and nodes (see `kenornir gen-config` for the format)")
        return None
    keadm, template_args, failed_args = _read_keadm(reader, top.get("keadm"))
    drafts = _read_nodes(reader, top.get("nodes"), keadm)
    max_run_num = reader.integer(top.get("maxRunNum"), "maxRunNum")
    if max_run_num is not None and max_run_num < 0:
        reader.fail(
            "maxRunNum", f"{max_run_num} is below 0 (0 or unset means {DEFAULT_MAX_RUN_NUM})"
        )
    transfer = reader.choice(top.get("transfer"), "transfer", TRANSFER_MODES)
    keadm = _check_packages(reader, keadm, drafts)
    nodes = [_finish_node(reader, draft, keadm, template_args, failed_args) for draft in drafts]
    if reader.errors:
        return None
    return BatchConfig(
        keadm=keadm,
        nodes=tuple(node for node in nodes if node is not None),
        max_run_num=max_run_num or DEFAULT_MAX_RUN_NUM,
        source=reader.source,
        transfer=cast(TransferMode, transfer or "auto"),
        environment_secrets=tuple(sorted(reader.environment_values)),
    )


def _read_keadm(reader: _Reader, node: Node | None) -> tuple[KeadmConfig, dict[str, str], set[str]]:
    section = reader.mapping(node, "keadm", "keadm") or {}
    download = reader.mapping(section.get("download"), "keadm.download", "keadm.download") or {}
    url = reader.text(download.get("url"), "keadm.download.url")
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        shown = repr(masked_url(url))
        reader.fail(
            "keadm.download.url", f"{shown} is not an http(s) URL (write https://host/path)"
        )
    version = reader.text(
        section.get("keadmVersion"), "keadm.keadmVersion", what="the keadm version, e.g. v1.20.0"
    )
    if version is not None:
        written, version = version, version if version.startswith("v") else f"v{version}"
        if not _VERSION.fullmatch(version):
            reader.fail("keadm.keadmVersion", f"{written!r} is not a version (write e.g. v1.20.0)")
            version = None
    template_args, failed_args = reader.text_map(
        section.get("cmdTplArgs"), "keadm.cmdTplArgs", secret=True
    )
    keadm = KeadmConfig(
        download=DownloadConfig(
            enable=_default(reader.boolean(download.get("enable"), "keadm.download.enable"), True),
            url=url.rstrip("/") if url else None,
            verify_checksum=_default(
                reader.boolean(download.get("verifyChecksum"), "keadm.download.verifyChecksum"),
                True,
            ),
        ),
        keadm_version=version,
        arch_group=_read_arch_group(reader, section.get("archGroup")),
        offline_package_dir=reader.text(
            section.get("offlinePackageDir"), "keadm.offlinePackageDir"
        ),
        cmd_tpl_args=template_args,
        keadm_bin_dir=reader.text(section.get("keadmBinDir"), "keadm.keadmBinDir"),
        pre_run=_read_scripts(reader, section.get("preRun"), "keadm.preRun"),
        post_run=_read_scripts(reader, section.get("postRun"), "keadm.postRun"),
    )
    return keadm, template_args, failed_args


def _default(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _read_arch_group(reader: _Reader, node: Node | None) -> tuple[str, ...]:
    arches: list[str] = []
    for path, item in reader.items(node, "keadm.archGroup", single_allowed=False):
        arch = reader.choice(item, path, ARCHES)
        if arch in arches:
            reader.fail(path, f"'{arch}' is listed twice (remove one)")
        elif arch is not None:
            arches.append(arch)
    return tuple(arches)


def _read_scripts(reader: _Reader, node: Node | None, path: str) -> tuple[str, ...]:
    scripts = (
        reader.local_path(item, item_path, directory=False)
        for item_path, item in reader.items(node, path, single_allowed=True)
    )
    return tuple(script for script in scripts if script is not None)


def _read_nodes(reader: _Reader, node: Node | None, keadm: KeadmConfig) -> list[_NodeDraft]:
    if node is None or _is_unset(node):
        reader.fail("nodes", "is required (list the edge nodes; `kenornir gen-config` shows how)")
        return []
    if not isinstance(node, SequenceNode):
        reader.fail("nodes", f"must be a list of nodes, got {_kind(node)} (start each with '- ')")
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


def _read_node(reader: _Reader, index: int, node: Node, keadm: KeadmConfig) -> _NodeDraft | None:
    path = f"nodes[{index}]"
    fields = reader.mapping(node, path, "nodes[]")
    if fields is None:
        if _is_unset(node):
            reader.fail(path, "is empty (give nodeName, keadmCmd and ssh)")
        return None
    name = reader.text(
        fields.get("nodeName"), f"{path}.nodeName", what="a unique node name", required=True
    )
    if name is not None and not _NODE_NAME.fullmatch(name):
        reader.fail(
            f"{path}.nodeName",
            f"{name!r} cannot be used as a file name (use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128)",
        )
        name = None
    keadm_bin_dir = reader.text(fields.get("keadmBinDir"), f"{path}.keadmBinDir")
    copy_from = reader.local_path(fields.get("copyFrom"), f"{path}.copyFrom", directory=True)
    draft = _NodeDraft(
        index=index,
        name=name,
        ssh=_read_ssh(reader, fields.get("ssh"), f"{path}.ssh"),
        template=reader.text(
            fields.get("keadmCmd"),
            f"{path}.keadmCmd",
            what="the keadm command without 'keadm', e.g. join --cloudcore-ipport=...",
            required=True,
        ),
        copy_from=copy_from,
        keadm_bin_dir=keadm_bin_dir or keadm.keadm_bin_dir,
        labels=reader.text_map(fields.get("labels"), f"{path}.labels", secret=False)[0],
        pre_run=keadm.pre_run + _read_scripts(reader, fields.get("preRun"), f"{path}.preRun"),
        post_run=keadm.post_run + _read_scripts(reader, fields.get("postRun"), f"{path}.postRun"),
        arch=reader.choice(fields.get("arch"), f"{path}.arch", ARCHES),
    )
    _check_uploads(reader, draft)
    return draft


def _read_ssh(reader: _Reader, node: Node | None, path: str) -> SSHConfig | None:
    fields = reader.mapping(node, path, "nodes[].ssh")
    if fields is None:
        if path not in reader.failed:
            reader.fail(path, "is required (give ip, username and auth)")
        return None
    ip = reader.text(
        fields.get("ip"), f"{path}.ip", what="the node's IP address or host name", required=True
    )
    if ip is not None and not _is_address(ip):
        reader.fail(
            f"{path}.ip",
            f"{ip!r} is not an IP address or host name (write e.g. 192.168.1.10 or edge-1.lan)",
        )
    username = reader.text(
        fields.get("username"), f"{path}.username", what="the login user, e.g. root", required=True
    )
    port = _default(reader.integer(fields.get("port"), f"{path}.port"), DEFAULT_SSH_PORT)
    if not 1 <= port <= 65535:
        reader.fail(f"{path}.port", f"{port} is not a port number (use 1 to 65535)")
    sudo = _default(reader.boolean(fields.get("sudo"), f"{path}.sudo"), False)
    auth = _read_auth(reader, fields.get("auth"), f"{path}.auth")
    if ip is None or username is None or auth is None or f"{path}.ip" in reader.failed:
        return None
    return SSHConfig(ip=ip, username=username, port=port, auth=auth, sudo=sudo)


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        # All-numeric names like 300.1.1.1 are mistyped addresses, not host names.
        return not re.fullmatch(r"[0-9.]+", value) and bool(_HOST_NAME.fullmatch(value))
    return True


def _read_auth(reader: _Reader, node: Node | None, path: str) -> SSHAuth | None:
    if _is_unset(node):
        return SSHAuth(kind="agent")
    fields = reader.mapping(node, path, "nodes[].ssh.auth")
    if fields is None:
        return None
    kind = reader.choice(fields.get("type"), f"{path}.type", AUTH_TYPES, required=True)
    if kind is None:
        return None
    wanted, other = (
        ("passwordAuth", "privateKeyAuth")
        if kind == "password"
        else ("privateKeyAuth", "passwordAuth")
    )
    if not _is_unset(fields.get(other)):
        reader.fail(f"{path}.{other}", f"is set but type is {kind} (remove it, or change type)")
    block_path = f"{path}.{wanted}"
    block = reader.mapping(fields.get(wanted), block_path, f"nodes[].ssh.auth.{wanted}")
    if block is None:
        if block_path not in reader.failed:
            reader.fail(block_path, f"is required for type {kind} (add it under auth)")
        return None
    if kind == "password":
        password = reader.secret_text(
            block.get("password"),
            f"{block_path}.password",
            what="the login password, or ${NAME} to read it from the environment",
            required=True,
        )
        return None if password is None else SSHAuth(kind="password", password=password)
    key_path = reader.local_path(
        block.get("privateKeyPath"),
        f"{block_path}.privateKeyPath",
        directory=False,
        required=True,
    )
    passphrase = reader.secret_text(block.get("passphrase"), f"{block_path}.passphrase")
    if key_path is None or f"{block_path}.passphrase" in reader.failed:
        return None
    return SSHAuth(kind="privateKey", private_key_path=key_path, passphrase=passphrase)


def _check_uploads(reader: _Reader, draft: _NodeDraft) -> None:
    """Every upload lands flat in the stage dir: two files with one name would overwrite."""
    path = f"nodes[{draft.index}]"
    uploads: dict[str, tuple[str, str]] = {}  # name on the node -> (local path, field)
    if draft.keadm_bin_dir is None:
        uploads["keadm"] = ("", "")  # the keadm binary
    if draft.copy_from is not None:
        try:
            entries = sorted(Path(draft.copy_from).iterdir())
        except OSError as exc:
            reader.fail(f"{path}.copyFrom", f"cannot be listed: {exc.strerror} (check it)")
            entries = []
        for entry in entries:
            if entry.is_dir():
                reader.fail(
                    f"{path}.copyFrom",
                    f"has the subdirectory '{entry.name}' (copyFrom takes files only: move it out)",
                )
            else:
                _add_upload(reader, uploads, entry.name, str(entry), f"{path}.copyFrom")
    for key, scripts in (("preRun", draft.pre_run), ("postRun", draft.post_run)):
        for script in scripts:
            _add_upload(reader, uploads, Path(script).name, script, f"{path}.{key}")


def _add_upload(
    reader: _Reader, uploads: dict[str, tuple[str, str]], name: str, source: str, path: str
) -> None:
    problem = upload_name_problem(name)
    if problem is not None:
        reader.fail(path, f"the file name {name!r} {problem} (rename the file)")
        return
    local, field = uploads.get(name, (source, path))
    if not local:
        reader.fail(path, "has a file named 'keadm', which would replace keadm itself (rename it)")
    elif local != source:
        reader.fail(
            path,
            f"'{name}' has the same name as a file from {field} and would overwrite it on the "
            "node (rename one)",
        )
    else:
        uploads[name] = (source, path)


def _check_packages(reader: _Reader, keadm: KeadmConfig, drafts: list[_NodeDraft]) -> KeadmConfig:
    """Cross-field checks for the controller side; returns keadm with its download URL resolved."""
    if "keadm" in reader.failed or all(draft.keadm_bin_dir is not None for draft in drafts):
        return keadm
    if keadm.keadm_version is None and "keadm.keadmVersion" not in reader.failed:
        reader.fail(
            "keadm.keadmVersion",
            "is required (set the keadm version to install, e.g. v1.20.0; "
            "only nodes with keadmBinDir can do without)",
        )
    if not keadm.arch_group and "keadm.archGroup" not in reader.failed:
        reader.fail(
            "keadm.archGroup",
            f"is required (list the architectures to prepare: {', '.join(ARCHES)})",
        )
    for draft in drafts:
        if draft.arch and draft.keadm_bin_dir is None and draft.arch not in keadm.arch_group:
            reader.fail(
                f"nodes[{draft.index}].arch",
                f"'{draft.arch}' is not in keadm.archGroup (add it there: no keadm is prepared "
                "for it)",
            )
    offline_dir = keadm.offline_package_dir
    if not keadm.download.enable:
        if offline_dir is None and "keadm.offlinePackageDir" not in reader.failed:
            reader.fail(
                "keadm.offlinePackageDir",
                "is required when keadm.download.enable is false (set the directory holding "
                "<arch>/keadm-<version>-linux-<arch>.tar.gz)",
            )
        elif offline_dir is not None:
            offline_dir = reader.existing_path(
                offline_dir, "keadm.offlinePackageDir", directory=True
            )
    url = keadm.download.url
    if url is None and keadm.keadm_version is not None:
        url = f"{DEFAULT_DOWNLOAD_BASE}/{keadm.keadm_version}"
    download = DownloadConfig(keadm.download.enable, url, keadm.download.verify_checksum)
    return KeadmConfig(
        download=download,
        keadm_version=keadm.keadm_version,
        arch_group=keadm.arch_group,
        offline_package_dir=offline_dir,
        cmd_tpl_args=keadm.cmd_tpl_args,
        keadm_bin_dir=keadm.keadm_bin_dir,
        pre_run=keadm.pre_run,
        post_run=keadm.post_run,
    )


def _finish_node(
    reader: _Reader,
    draft: _NodeDraft,
    keadm: KeadmConfig,
    template_args: dict[str, str],
    failed_args: set[str],
) -> NodeConfig | None:
    """Render the node's command; a node with any error yields None (the error is recorded)."""
    if draft.template is None:
        return None
    path = f"nodes[{draft.index}].keadmCmd"
    context: dict[str, object] = {
        "nodeName": draft.name or "",
        "ip": draft.ssh.ip if draft.ssh else "",
        "labels": draft.labels,
        # Args that failed to read were reported already; a placeholder for them avoids a second
        # "no value" error about the same mistake.
        **dict.fromkeys(failed_args, ""),
        **template_args,
    }
    try:
        command = render_command(draft.template, context).strip()
    except MissingPlaceholders as exc:
        names = ", ".join(f"'{name}'" for name in exc.names)
        one = len(exc.names) == 1
        node = f" for node {draft.name}" if draft.name else ""
        reader.fail(
            path,
            f"{'placeholder' if one else 'placeholders'} {names} {'has' if one else 'have'} "
            f"no value{node} (add {'it' if one else 'them'} to keadm.cmdTplArgs)",
        )
        return None
    except TemplateProblem as exc:
        # Jinja2 may quote a word of the template, which could be an inline token.
        quoted = token_values(draft.template) + list(template_args.values())
        reader.fail(path, f"{mask_secrets(str(exc), quoted)} (check the {{{{ }}}} placeholders)")
        return None
    if not command:
        reader.fail(path, "renders to an empty command (give the keadm command, e.g. join ...)")
    elif "\n" in command:
        reader.fail(path, "renders to more than one line (write the command on one line)")
    elif command.split()[0] == "keadm":
        reader.fail(path, "starts with 'keadm' (drop it: kenornir runs ./keadm <keadmCmd>)")
    if path in reader.failed or draft.name is None or draft.ssh is None:
        return None
    auth = draft.ssh.auth
    secrets = secret_values(
        credentials=(auth.password, auth.passphrase),
        template_args=keadm.cmd_tpl_args,
        commands=(command,),
        config_secrets=(*reader.environment_values, *url_secrets(keadm.download.url or "")),
    )
    return NodeConfig(
        name=draft.name,
        ssh=draft.ssh,
        keadm_cmd_template=draft.template,
        keadm_cmd=command,
        keadm_cmd_masked=mask_secrets(command, secrets),
        copy_from=draft.copy_from,
        pre_run=draft.pre_run,
        post_run=draft.post_run,
        keadm_bin_dir=draft.keadm_bin_dir,
        labels=draft.labels,
        arch=draft.arch,
        secrets=secrets,
    )


# --- gen-config ---------------------------------------------------------------------------

# Upstream's fields in upstream's order; kenornir's extensions are commented out. Values the user
# must fill are <PLACEHOLDERS>, which validation rejects by name until they are replaced.
SAMPLE_CONFIG = """\
# keadm batch config, as read by `keadm batch -c FILE` and by `kenornir run FILE`.
# Replace every <PLACEHOLDER>; `kenornir validate FILE` names the ones left.
# Commented-out keys marked [kenornir] are kenornir extensions; keadm batch does not know them.
keadm:
  download:
    enable: true                # <Optional> false: use offlinePackageDir instead. Default true.
    # url: https://mirror.example.com/kubeedge/v1.20.0
                                # <Optional> fetch {url}/keadm-{version}-linux-{arch}.tar.gz from
                                # here. Default: the GitHub release of keadmVersion.
    # verifyChecksum: true      # [kenornir] check each tarball's published sha512. Default true.
  keadmVersion: "<KEADM-VERSION>"  # <Required> the version of your cloudcore, e.g. v1.20.0
  archGroup:                    # <Required> keadm builds to prepare: amd64, arm64 and/or arm
    - amd64
  # offlinePackageDir: ./keadm-packages
                                # <Optional> with download.enable false: holds
                                # <arch>/keadm-<version>-linux-<arch>.tar.gz
  cmdTplArgs:                   # <Optional> values for the {{.name}} placeholders in keadmCmd
    cmd: join
    cloudcore: "<CLOUDCORE-IP:PORT>"  # cloudcore's address, e.g. 192.168.1.2:10000
    token: "<TOKEN>"            # `keadm gettoken` on the cloud side, or "${KEADM_TOKEN}" to read
                                # it from the environment [kenornir]
  # keadmBinDir: /usr/local/bin # <Optional> keadm is already in this directory on every node:
                                # nothing is uploaded and keadm runs there
  # preRun: [preflight.sh]      # [kenornir] local scripts run on every node before keadm
  # postRun: [verify.sh]        # [kenornir] local scripts run on every node after keadm succeeded
nodes:
  - nodeName: edge-node-1       # <Required> unique; names this node's log file
    arch: amd64                 # <Optional> amd64/arm64/arm; detected with `uname -m` anyway
    # <Required> the keadm command without `keadm`, on one line (`>-` folds these two);
    # placeholders come from cmdTplArgs; [kenornir] also {{.nodeName}}, {{.ip}}, {{.labels.x}}
    keadmCmd: >-
      {{.cmd}} --cloudcore-ipport={{.cloudcore}}
      --edgenode-name=edge-node-1 --token={{.token}}
    # copyFrom: ./edge-files    # <Optional> every file in this directory is uploaded next to
                                # keadm (no subdirectories)
    # keadmBinDir: /usr/local/bin  # <Optional> this node already has keadm here
    # labels: {site: north}     # [kenornir] select nodes with --label site=north
    # preRun: [preflight.sh]    # [kenornir] this node's own scripts, after the global ones
    # postRun: [verify.sh]
    ssh:
      ip: "<EDGE-NODE-IP>"      # <Required> the node's IP address or host name
      username: root            # <Required> root, or another user with sudo: true
      port: 22                  # <Optional> default 22
      # sudo: true              # [kenornir] run commands through sudo (non-root username)
      auth:                     # [kenornir] leave auth out to log in with your ssh-agent's keys
        type: password          # <Required> password or privateKey
        passwordAuth:
          password: "<PASSWORD>"  # or "${EDGE_PASSWORD}" to read it from the environment [kenornir]
        # privateKeyAuth:       # with type: privateKey, instead of passwordAuth
        #   privateKeyPath: ~/.ssh/id_ed25519
        #   passphrase: "${KEY_PASSPHRASE}"  # [kenornir] for an encrypted key
maxRunNum: 5                    # <Optional> nodes processed at once; 0 or unset means 5
# transfer: auto                # [kenornir] how files reach nodes: auto (one exec stream where
#                               # the node's userland allows, else SFTP), stream, or sftp
"""
