"""preRun / postRun hook scripts: uploaded to the staging dir and run there with /bin/bash."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.config import STAGING_DIR
from kenornir.tasks.command import run_remote
from kenornir.tasks.files import FileToSend, file_versions
from kenornir.tasks.transfer import upload_files


def hook_files(scripts: list[str], remote_dir: str = STAGING_DIR) -> list[FileToSend]:
    return [FileToSend(Path(s), posixpath.join(remote_dir, Path(s).name)) for s in scripts]


def _run_hooks(
    task: Task, scripts: Sequence[str | Path] | None, workdir: str, key: str, what: str
) -> Result:
    """Upload the scripts (by default host.data[key]) into workdir, then run each once the user
    that runs it (root on sudo nodes) has checked, right before, that it is the uploaded one
    (shell.guarded)."""
    chosen = task.host.data.get(key, ()) if scripts is None else scripts
    files = hook_files([str(script) for script in chosen], workdir)
    upload_files(task, files)
    for item, version in zip(files, file_versions(files), strict=True):
        line = shell.hook_line(item.local.name, workdir)
        run_remote(task, shell.guarded(line, [version]), f"{what} script {item.local.name}")
    return Result(host=task.host, result=[f.local.name for f in files], changed=bool(files))


def pre_run(
    task: Task, scripts: Sequence[str | Path] | None = None, workdir: str = STAGING_DIR
) -> Result:
    """Run preRun scripts in order (by default the node's, host.data["pre_run"]); the first
    failure stops them (and keadm).

    Raises:
        StageFailed: a script exited non-zero, timed out or was not the uploaded one.
    """
    return _run_hooks(task, scripts, workdir, "pre_run", "pre-run")


def post_run(
    task: Task, scripts: Sequence[str | Path] | None = None, workdir: str = STAGING_DIR
) -> Result:
    """Run postRun scripts (by default the node's, host.data["post_run"]) after keadm succeeded.

    Raises:
        StageFailed: a script failed; keadm itself had succeeded.
    """
    return _run_hooks(task, scripts, workdir, "post_run", "post-run")
