"""Every key a batch config may hold, declared once: where it lives, what kind of value it takes,
whether it is required and what to write there. The reader checks keys and reads values from
this table alone; the sections (sections.py) only assemble what it read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kenornir.config.model import ARCHES, AUTH_TYPES, TRANSFER_MODES

# How a value is read (reader.Reader.value):
# text, secret (text with ${NAME} from the environment), integer, boolean, choice (one of
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
        Field("maxRunNum", "integer"),
        Field("transfer", "choice", choices=TRANSFER_MODES),
    ),
    KEADM: (
        Field("download", "node"),
        Field("keadmVersion", "text", what="the keadm version, e.g. v1.20.0"),
        Field("archGroup", "node"),
        Field("offlinePackageDir", "text"),
        Field("cmdTplArgs", "secret_map"),
        Field("keadmBinDir", "text"),
        Field("preRun", "scripts"),
        Field("postRun", "scripts"),
    ),
    DOWNLOAD: (
        Field("enable", "boolean"),
        Field("url", "text"),
        Field("verifyChecksum", "boolean"),
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
        Field("preRun", "scripts"),
        Field("postRun", "scripts"),
        Field("ssh", "node"),
    ),
    SSH: (
        Field("ip", "text", what="the node's IP address or host name", required=True),
        Field("username", "text", what="the login user, e.g. root", required=True),
        Field("port", "integer"),
        Field("sudo", "boolean"),
        Field("auth", "node"),
        Field("proxyJump", "node"),
    ),
    JUMP: (
        Field("ip", "text", what="the jump host's IP address or host name", required=True),
        Field("username", "text", what="the login user on the jump host", required=True),
        Field("port", "integer"),
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
