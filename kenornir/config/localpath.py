"""Local files and directories a config names (copyFrom, scripts, keys, offlinePackageDir).

They resolve against the working directory, as upstream keadm batch resolves them, not against
the config file: a path that only exists beside the config gets a hint saying so, since that is
the usual cause of "does not exist".
"""

from __future__ import annotations

import os
from pathlib import Path


class LocalPathProblem(ValueError):
    """A path that cannot be used, worded for a config error line."""


def existing_local_path(value: str, *, directory: bool, config_dir: Path) -> str:
    """The absolute, normalised path of a readable local file (or directory) written as `value`.

    Raises:
        LocalPathProblem: it does not exist, is of the other kind, or cannot be read.
    """
    written = Path(value).expanduser()
    resolved = Path(os.path.normpath(Path.cwd() / written))
    if not resolved.exists():
        raise LocalPathProblem(f"{value!r} does not exist ({_hint(written, config_dir)})")
    if directory and not resolved.is_dir():
        raise LocalPathProblem(f"{value!r} is not a directory (give a directory)")
    if not directory and not resolved.is_file():
        raise LocalPathProblem(f"{value!r} is not a file (give a file)")
    if not os.access(resolved, os.R_OK):
        raise LocalPathProblem(f"{value!r} is not readable (check its permissions)")
    return str(resolved)


def _hint(written: Path, config_dir: Path) -> str:
    if written.is_absolute():
        return "check the path"
    beside_config = config_dir / written
    if beside_config.exists():
        return (
            "relative paths start from the current directory, as in keadm batch; "
            "it exists relative to the config file: run from there or write "
            f"'{os.path.relpath(beside_config)}'"
        )
    return "relative paths start from the current directory, as in keadm batch"
