"""join_node: one node's whole job, stage by stage, ending in a NodeOutcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import paramiko
from nornir.core.exceptions import NornirSubTaskError
from nornir.core.task import Result, Task

from kenornir.address import host_port
from kenornir.config import STAGING_DIR
from kenornir.connection import CommandInterrupted, ConnectError, run_options
from kenornir.nodelog import node_logger
from kenornir.outcome import NodeOutcome, Stage, StageFailed, Status
from kenornir.secret import host_secrets
from kenornir.tasks.command import run_keadm
from kenornir.tasks.connect import connect
from kenornir.tasks.facts import probe_node
from kenornir.tasks.files import FileToSend, PackedFile, file_versions
from kenornir.tasks.hooks import post_run, pre_run
from kenornir.tasks.transfer import dir_files, stage_dir, upload_files
from kenornir.template import mask_secrets


class PreparedBinary(Protocol):
    """What join_node needs of a prepared package (kenornir.packages.KeadmPackage)."""

    @property
    def binary(self) -> Path: ...

    @property
    def binary_sha256(self) -> str: ...

    @property
    def tarball(self) -> Path: ...

    @property
    def binary_member(self) -> str: ...

    @property
    def binary_zstd(self) -> Path: ...


def _failure(exc: BaseException) -> tuple[Status, str, int | None]:
    """Status, one-line reason and exit code for whatever a stage raised."""
    if isinstance(exc, ConnectError):
        return (Status.UNREACHABLE if exc.unreachable else Status.FAILED), str(exc), None
    if isinstance(exc, StageFailed):
        return exc.status, exc.reason, exc.exit_code
    if isinstance(exc, CommandInterrupted):
        return Status.INTERRUPTED, str(exc), None
    if isinstance(exc, paramiko.SSHException | OSError | EOFError):
        return Status.FAILED, f"SSH connection lost: {str(exc) or type(exc).__name__}", None
    return Status.FAILED, f"internal error: {type(exc).__name__}: {exc}", None


def _stop_requested(task: Task) -> bool:
    event = run_options(task.nornir.config).get("stop_event")
    return bool(event is not None and event.is_set())


def join_node(task: Task, packages: Mapping[str, PreparedBinary] | None = None) -> Result:
    """Bring one node through connect, arch, stage dir, upload, pre-run, keadm, post-run.

    Args:
        packages: the prepared keadm binary per arch; may be empty when the node has keadmBinDir.
    Returns:
        Result whose `result` is the node's NodeOutcome; failed unless the node is ok or skipped.
    """
    host = task.host
    outcome = NodeOutcome(node=host.name, address=host_port(host.hostname or "", host.port))
    if _stop_requested(task):
        outcome.reason = "run interrupted before this node started"
        return Result(host=host, result=outcome, failed=False)
    log = node_logger(host.name)
    started = time.monotonic()
    stage = Stage.CONNECT

    def step(this_stage: Stage, subtask: Callable[..., Result], **kwargs: Any) -> Any:
        nonlocal stage
        stage = this_stage
        if _stop_requested(task):
            raise CommandInterrupted(f"run interrupted before stage {this_stage} started")
        log.info("stage %s", this_stage)
        return task.run(task=subtask, name=str(this_stage), **kwargs)[0].result

    try:
        step(Stage.CONNECT, connect)
        copy_from = dir_files(Path(host.data["copy_from"])) if host.data["copy_from"] else []
        keadm = _keadm_per_arch(host.data, packages or {})
        # Every file the node may need, keadm for each arch: the probe learns the arch too.
        copy_from_versions = file_versions(copy_from)
        candidates = [*copy_from_versions, *file_versions(list(keadm.values()))]
        facts = step(Stage.ARCH, probe_node, versions=candidates)
        outcome.arch = facts.arch
        step(Stage.STAGE_DIR, stage_dir, verdict=facts.staging)
        own_keadm = host.data["keadm_bin_dir"] is not None
        files = copy_from if own_keadm else [*copy_from, keadm[outcome.arch]]
        outcome.changed += step(Stage.UPLOAD, upload_files, files=files, remote_state=facts.remote)
        if host.data["pre_run"]:
            step(Stage.PRE_RUN, pre_run)
        workdir, sha = _keadm_location(host.data, packages or {}, outcome.arch)
        # keadm may run copyFrom scripts (--pre-run=./x.sh): they are checked as keadm is.
        outcome.exit_code = step(
            Stage.KEADM,
            run_keadm,
            workdir=workdir,
            binary_sha256=sha,
            verified=copy_from_versions,
        )
        if host.data["post_run"]:
            step(Stage.POST_RUN, post_run)
        outcome.status = Status.OK
    except (NornirSubTaskError, CommandInterrupted) as error:
        cause = error.result[0].exception if isinstance(error, NornirSubTaskError) else error
        outcome.status, reason, outcome.exit_code = _failure(cause or error)
        # Reasons quote exception text, which may quote a command line: mask it at the source.
        outcome.reason = mask_secrets(reason, host_secrets(host.data))
        outcome.stage = stage
        if outcome.status is Status.FAILED and stage is Stage.POST_RUN:
            outcome.reason = f"{outcome.reason} (keadm itself succeeded)"
        log.log(logging.ERROR, "%s at stage %s: %s", outcome.status, stage, outcome.reason)
    finally:
        outcome.duration_s = time.monotonic() - started
        host.close_connections()
    failed = outcome.status not in (Status.OK, Status.SKIPPED)
    return Result(host=host, result=outcome, failed=failed, changed=bool(outcome.changed))


def _keadm_per_arch(
    data: Mapping[str, Any], packages: Mapping[str, PreparedBinary]
) -> dict[str, FileToSend]:
    """The keadm upload for each prepared arch; none when the node has its own keadm."""
    if data["keadm_bin_dir"] is not None:
        return {}
    return {
        arch: FileToSend(
            package.binary,
            f"{STAGING_DIR}/keadm",
            sha256=package.binary_sha256,
            packed=PackedFile(package.tarball, package.binary_member, package.binary_zstd),
        )
        for arch, package in packages.items()
    }


def _keadm_location(
    data: Mapping[str, Any], packages: Mapping[str, PreparedBinary], arch: str
) -> tuple[str, str | None]:
    """Where keadm runs, and the sha256 it must have there (None: the node's own keadm)."""
    if data["keadm_bin_dir"] is not None:
        return data["keadm_bin_dir"], None
    return STAGING_DIR, packages[arch].binary_sha256
