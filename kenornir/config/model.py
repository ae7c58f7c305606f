"""The batch config as the rest of kenornir sees it: typed, immutable, every value checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kenornir.address import host_port
from kenornir.arch import KEADM_ARCHES
from kenornir.shell import keadm_line

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
# A site names a Celery queue (kenornir.site.<site>): no dots or spaces to misroute it.
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SITE_NAME_RULE = (
    "use lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 63"
)


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
class JumpHost:
    """A host the SSH connection to a node goes through (OpenSSH's ProxyJump)."""

    ip: str
    port: int
    username: str
    auth: SSHAuth

    @property
    def address(self) -> str:
        return host_port(self.ip, self.port)


@dataclass(frozen=True)
class SSHConfig:
    ip: str
    username: str
    port: int
    auth: SSHAuth
    sudo: bool = False
    proxy_jump: tuple[JumpHost, ...] = ()  # outermost first

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
    # Which workers run the node in a --broker run: those of queue kenornir.site.<site>.
    site: str | None = None

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
