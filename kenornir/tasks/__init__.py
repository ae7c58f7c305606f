"""kenornir's Nornir tasks: each usable alone with any Nornir object, or composed by join_node."""

from kenornir.tasks.command import run_command, run_keadm
from kenornir.tasks.connect import connect
from kenornir.tasks.facts import NodeFacts, detect_arch, probe_node
from kenornir.tasks.hooks import post_run, pre_run
from kenornir.tasks.join import join_node
from kenornir.tasks.sftp import sftp_download, sftp_upload
from kenornir.tasks.transfer import stage_dir, upload, upload_dir, upload_files

__all__ = [
    "NodeFacts",
    "connect",
    "detect_arch",
    "join_node",
    "post_run",
    "pre_run",
    "probe_node",
    "run_command",
    "run_keadm",
    "sftp_download",
    "sftp_upload",
    "stage_dir",
    "upload",
    "upload_dir",
    "upload_files",
]
