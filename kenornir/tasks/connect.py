"""Open the node's SSH connection as a stage of its own, so login problems are named as such."""

from __future__ import annotations

from nornir.core.task import Result, Task

from kenornir.connection import node_ssh
from kenornir.nodelog import node_logger


def connect(task: Task) -> Result:
    """Log in to the node (host key checked per the run's policy).

    Raises:
        kenornir.connection.ConnectError: the node is unreachable or refused the login.
    """
    ssh = node_ssh(task)
    for notice in ssh.notices:
        node_logger(task.host.name).warning("%s", notice)
    transport = ssh.connection.get_transport()
    version = transport.remote_version if transport is not None else "?"
    return Result(host=task.host, result=version, changed=False)
