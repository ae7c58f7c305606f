"""The batch config: upstream's schema plus kenornir's extensions, read from YAML with every
problem named (file, YAML path, what to do), into an immutable model.

model.py holds the model; fields.py the one table of every key (kind, required, default, hint)
and the unknown-key hints drawn from it; reader.py the YAML reading it drives, on yamltree.py
(tags, merge keys, unset) and localpath.py (local files); sections.py and ssh.py the assembly
section by section; checks.py the checks across fields and the command rendering; sample.py the
gen-config sample.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import paramiko

from kenornir.config.model import (
    ARCHES,
    AUTH_TYPES,
    DEFAULT_DOWNLOAD_BASE,
    DEFAULT_MAX_RUN_NUM,
    DEFAULT_SSH_PORT,
    STAGING_DIR,
    TRANSFER_MODES,
    AuthKind,
    BatchConfig,
    ConfigError,
    DownloadConfig,
    JumpHost,
    KeadmConfig,
    NodeConfig,
    SSHAuth,
    SSHConfig,
    TransferMode,
)
from kenornir.config.reader import Reader
from kenornir.config.sample import SAMPLE_CONFIG
from kenornir.config.sections import read_batch
from kenornir.config.sshconfig import apply_ssh_config, read_ssh_config

__all__ = [
    "ARCHES",
    "AUTH_TYPES",
    "DEFAULT_DOWNLOAD_BASE",
    "DEFAULT_MAX_RUN_NUM",
    "DEFAULT_SSH_PORT",
    "SAMPLE_CONFIG",
    "STAGING_DIR",
    "TRANSFER_MODES",
    "AuthKind",
    "BatchConfig",
    "ConfigError",
    "DownloadConfig",
    "JumpHost",
    "KeadmConfig",
    "NodeConfig",
    "SSHAuth",
    "SSHConfig",
    "TransferMode",
    "exposed_secrets_warning",
    "load_config",
    "parse_config",
]


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, ssh_config: Path | None = None
) -> BatchConfig:
    """Load and validate a batch config file.

    Relative paths inside resolve against the working directory, like upstream's. ssh_config:
    an OpenSSH client config that fills in the nodes' ssh fields (see config.sshconfig).

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
    openssh = None
    if ssh_config is not None:
        try:
            openssh = read_ssh_config(ssh_config)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError([f"--ssh-config {ssh_config}: cannot be read: {reason}"]) from None
    return parse_config(
        text, source=label, config_dir=Path(path).parent, env=env, ssh_config=openssh
    )


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
    ssh_config: paramiko.SSHConfig | None = None,
) -> BatchConfig:
    """Validate config text; `config_dir` only serves hints about relative paths."""
    reader = Reader(source, os.environ if env is None else env, config_dir or Path.cwd())
    root = reader.compose(text)
    if root is not None and ssh_config is not None:
        apply_ssh_config(root, ssh_config)
    config = read_batch(reader, root) if root is not None else None
    if reader.errors or config is None:
        raise ConfigError(reader.errors)
    return config
