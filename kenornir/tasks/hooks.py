"""preRun / postRun hook scripts: uploaded to the staging dir and run there with /bin/bash."""

from __future__ import annotations

import posixpath
from pathlib import Path

from nornir.core.task import Result, Task

from kenornir.config import STAGING_DIR
from kenornir.tasks.command import run_remote
from kenornir.tasks.transfer import FileToSend, upload_files
from kenornir.template import hook_command_line


def hook_files(scripts: list[str], remote_dir: str = STAGING_DIR) -> list[FileToSend]:
    return [FileToSend(Path(s), posixpath.join(remote_dir, Path(s).name)) for s in scripts]


def _run_hooks(task: Task, key: str, what: str) -> Result:
    files = hook_files(task.host.data[key])
    upload_files(task, files)
    for item in files:
        command = hook_command_line(item.local.name, STAGING_DIR)
        run_remote(task, command, f"{what} script {item.local.name}")
    return Result(host=task.host, result=[f.local.name for f in files], changed=bool(files))


def pre_run(task: Task) -> Result:
    """Run the node's preRun scripts in order; the first failure stops them (and keadm).

    Raises:
        StageFailed: a script exited non-zero or timed out.
    """
    return _run_hooks(task, "pre_run", "pre-run")


def post_run(task: Task) -> Result:
    """Run the node's postRun scripts after keadm succeeded.

    Raises:
        StageFailed: a script failed; keadm itself had succeeded.
    """
    return _run_hooks(task, "post_run", "post-run")
