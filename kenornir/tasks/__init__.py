"""kenornir's Nornir tasks: each usable alone with any Nornir object, or composed by join_node."""

from kenornir.tasks.command import keadm_command_line, run_keadm
from kenornir.tasks.connect import connect
from kenornir.tasks.facts import detect_arch
from kenornir.tasks.hooks import post_run, pre_run
from kenornir.tasks.join import join_node
from kenornir.tasks.transfer import stage_dir, upload, upload_dir, upload_files

__all__ = [
    "connect",
    "detect_arch",
    "join_node",
    "keadm_command_line",
    "post_run",
    "pre_run",
    "run_keadm",
    "stage_dir",
    "upload",
    "upload_dir",
    "upload_files",
]
