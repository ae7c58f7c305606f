"""preRun / postRun hook scripts: uploaded to the staging dir and run there with /bin/bash."""

from __future__ import annotations

import posixpath
from pathlib import Path

from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.config import STAGING_DIR
from kenornir.tasks.command import run_remote
from kenornir.tasks.transfer import FileToSend, file_versions, upload_files


def hook_files(scripts: list[str], remote_dir: str = STAGING_DIR) -> list[FileToSend]:
    return [FileToSend(Path(s), posixpath.join(remote_dir, Path(s).name)) for s in scripts]


def _run_hooks(task: Task, key: str, what: str) -> Result:
    """Upload the scripts, then run each once the user that runs it (root on sudo nodes) has
    checked, right before, that it is the uploaded one (shell.guarded)."""
    files = hook_files(task.host.data[key])
    upload_files(task, files)
    for item, version in zip(files, file_versions(files), strict=True):
        line = shell.hook_line(item.local.name, STAGING_DIR)
        run_remote(task, shell.guarded(line, [version]), f"{what} script {item.local.name}")
    return Result(host=task.host, result=[f.local.name for f in files], changed=bool(files))


def pre_run(task: Task) -> Result:
    """Run the node's preRun scripts in order; the first failure stops them (and keadm).

    Raises:
        StageFailed: a script exited non-zero, timed out or was not the uploaded one.
    """
    return _run_hooks(task, "pre_run", "pre-run")


def post_run(task: Task) -> Result:
    """Run the node's postRun scripts after keadm succeeded.

    Raises:
        StageFailed: a script failed; keadm itself had succeeded.
    """
    return _run_hooks(task, "post_run", "post-run")
