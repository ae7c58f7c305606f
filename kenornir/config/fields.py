"""Every key a batch config may hold, declared once: where it lives, what kind of value it takes,
whether it is required, its default and what to write there. The reader checks keys (with
did-you-mean hints drawn from this table) and reads values from this table alone; the sections
(sections.py, ssh.py) only assemble what it read."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kenornir.config.model import (
    ARCHES,
    AUTH_TYPES,
    DEFAULT_MAX_RUN_NUM,
    DEFAULT_SSH_PORT,
    TRANSFER_MODES,
)

# How a value is read (reader.Reader.value):
# text, secret (text that may be ${NAME}, read from the environment; every value read that way
# is masked as a secret, and passwords and passphrases always are), integer, boolean, choice (one of
# `choices`), file / dir (a local path that must exist), scripts (local files, one or a list),
# labels (a mapping of text), secret_map (a mapping of text with ${NAME}), node (the YAML node
# itself: a section or list its reader walks on its own).
Kind = Literal[
    "text",
    "secret",
    "integer",
    "boolean",
    "choice",
    "file",
    "dir",
    "scripts",
    "labels",
    "secret_map",
    "node",
]


@dataclass(frozen=True)
class Field:
    key: str
    kind: Kind
    what: str = "a value"  # what the value should be, for hints ("set it to ...")
    required: bool = False
    choices: tuple[str, ...] = ()
    # The value when the key is unset (or its value was wrong: that is reported already, and the
    # default keeps checks that depend on it from adding a second error about the same mistake).
    default: object = None


TOP = "the top level"
KEADM = "keadm"
DOWNLOAD = "keadm.download"
NODE = "nodes[]"
SSH = "nodes[].ssh"
AUTH = "nodes[].ssh.auth"
PASSWORD_AUTH = "nodes[].ssh.auth.passwordAuth"
KEY_AUTH = "nodes[].ssh.auth.privateKeyAuth"
JUMP = "nodes[].ssh.proxyJump[]"

# Section name -> its fields, in upstream's order (the order unknown-key hints list them in).
SECTIONS: dict[str, tuple[Field, ...]] = {
    TOP: (
        Field("keadm", "node"),
        Field("nodes", "node"),
        Field("maxRunNum", "integer", default=DEFAULT_MAX_RUN_NUM),
        Field("transfer", "choice", choices=TRANSFER_MODES, default="auto"),
    ),
    KEADM: (
        Field("download", "node"),
        Field("keadmVersion", "text", what="the keadm version, e.g. v1.20.0"),
        Field("archGroup", "node"),
        Field("offlinePackageDir", "text"),
        Field("cmdTplArgs", "secret_map"),
        Field("keadmBinDir", "text"),
        Field("preRun", "scripts", default=()),
        Field("postRun", "scripts", default=()),
    ),
    DOWNLOAD: (
        Field("enable", "boolean", default=True),
        Field("url", "text"),
        Field("verifyChecksum", "boolean", default=True),
    ),
    NODE: (
        Field("nodeName", "text", what="a unique node name", required=True),
        Field("arch", "choice", choices=ARCHES),
        Field(
            "keadmCmd",
            "text",
            what="the keadm command without 'keadm', e.g. join --cloudcore-ipport=...",
            required=True,
        ),
        Field("copyFrom", "dir"),
        Field("keadmBinDir", "text"),
        Field("labels", "labels"),
        Field("preRun", "scripts", default=()),
        Field("postRun", "scripts", default=()),
        Field("ssh", "node"),
        # kenornir: the site whose workers run the node in a --broker run (kenornir.distributed)
        Field("site", "text"),
    ),
    SSH: (
        Field("ip", "text", what="the node's IP address or host name", required=True),
        Field("username", "text", what="the login user, e.g. root", required=True),
        Field("port", "integer", default=DEFAULT_SSH_PORT),
        Field("sudo", "boolean", default=False),
        Field("auth", "node"),
        Field("proxyJump", "node"),
    ),
    JUMP: (
        Field("ip", "text", what="the jump host's IP address or host name", required=True),
        Field("username", "text", what="the login user on the jump host", required=True),
        Field("port", "integer", default=DEFAULT_SSH_PORT),
        Field("auth", "node"),
    ),
    AUTH: (
        Field("type", "choice", choices=AUTH_TYPES, required=True),
        Field("passwordAuth", "node"),
        Field("privateKeyAuth", "node"),
    ),
    PASSWORD_AUTH: (
        Field(
            "password",
            "secret",
            what="the login password, or ${NAME} to read it from the environment",
            required=True,
        ),
    ),
    KEY_AUTH: (
        Field("privateKeyPath", "file", required=True),
        Field("passphrase", "secret"),
    ),
}


def keys_of(section: str) -> tuple[str, ...]:
    return tuple(field.key for field in SECTIONS[section])


def defaults_of(section: str) -> dict[str, Any]:
    """What a section reads as when it is left out: each field's default."""
    return {field.key: field.default for field in SECTIONS[section]}


def suggestion(value: str, choices: Iterable[str]) -> str:
    """` (did you mean 'X'?)` for the choice closest to a mistyped value, else ""."""
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


def unknown_key(key: str, section: str) -> str:
    """Why `key` is not read in `section`: it belongs to another section (mis-indented), it is a
    typo of a key here or of one elsewhere, or else which keys the section takes."""
    homes = [name for name in SECTIONS if key in keys_of(name)]
    if homes:
        where = "at the top level" if homes[0] == TOP else f"under {homes[0]}"
        return f"unknown key here ('{key}' belongs {where}: check the indentation)"
    hint = suggestion(key, keys_of(section))
    if hint:
        return f"unknown key{hint}"
    elsewhere = {known: name for name in SECTIONS for known in keys_of(name)}
    close = difflib.get_close_matches(key, list(elsewhere), n=1, cutoff=0.8)
    if close:
        return f"unknown key here (did you mean '{close[0]}', under {elsewhere[close[0]]}?)"
    return f"unknown key (expected one of: {', '.join(keys_of(section))})"
