"""join_node: one node's whole job, stage by stage, ending in a NodeOutcome."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from nornir.core.exceptions import NornirSubTaskError
from nornir.core.task import Result, Task

from kenornir.address import host_port
from kenornir.config import STAGING_DIR
from kenornir.connection import (
    CONNECTION_NAME,
    CommandInterrupted,
    ConnectError,
    KenornirSSH,
    run_options,
)
from kenornir.joined import ALREADY_JOINED, is_join, reset_before_rejoin
from kenornir.nodelog import node_logger
from kenornir.outcome import NodeOutcome, Stage, StageFailed, Status
from kenornir.retry import RetryPolicy, is_transient
from kenornir.secret import host_secrets, reveal
from kenornir.tasks.command import run_keadm
from kenornir.tasks.connect import connect
from kenornir.tasks.facts import probe_node
from kenornir.tasks.files import FileToSend, PackedFile, file_versions, part_paths
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


@dataclass(frozen=True)
class _Failure:
    status: Status
    reason: str
    exit_code: int | None
    connection_lost: bool


def _failure(exc: BaseException) -> _Failure:
    """Status, one-line reason and exit code for whatever a stage raised, and whether the
    connection was lost on the way (a transient fault)."""
    if isinstance(exc, ConnectError):
        status = Status.UNREACHABLE if exc.unreachable else Status.FAILED
        return _Failure(status, str(exc), None, connection_lost=False)
    if isinstance(exc, StageFailed):
        return _Failure(exc.status, exc.reason, exc.exit_code, exc.connection_lost)
    if isinstance(exc, CommandInterrupted):
        return _Failure(Status.INTERRUPTED, str(exc), None, connection_lost=False)
    if isinstance(exc, paramiko.SSHException | OSError | EOFError):
        reason = f"SSH connection lost: {str(exc) or type(exc).__name__}"
        return _Failure(Status.FAILED, reason, None, connection_lost=True)
    reason = f"internal error: {type(exc).__name__}: {exc}"
    return _Failure(Status.FAILED, reason, None, connection_lost=False)


def _stop_event(task: Task) -> threading.Event | None:
    event = run_options(task.nornir.config).get("stop_event")
    return event if isinstance(event, threading.Event) else None


def _stop_requested(task: Task) -> bool:
    event = _stop_event(task)
    return event is not None and event.is_set()


def _wait_unless_stopped(task: Task, seconds: float) -> bool:
    """Wait seconds; True as soon as the run is stopped meanwhile."""
    event = _stop_event(task)
    if event is None:
        time.sleep(seconds)
        return False
    return event.wait(seconds)


def _connection_lost(task: Task) -> bool:
    """Whether the node's connection was opened and has died since."""
    plugin = task.host.connections.get(CONNECTION_NAME)
    return isinstance(plugin, KenornirSSH) and not plugin.is_active


class _Skip(Exception):
    """The node needs nothing done: the reason says why."""


def join_node(
    task: Task,
    packages: Mapping[str, PreparedBinary] | None = None,
    *,
    rejoin: bool | None = None,
    retry: RetryPolicy | None = None,
) -> Result:
    """Bring one node through connect, arch, stage dir, upload, pre-run, keadm, post-run.

    A `join` on a node joined already (kenornir.joined.EDGECORE_CONFIG exists) ends skipped
    before anything is uploaded, unless rejoin: then `keadm reset` runs first. A transient
    fault (no answer, a lost connection) before keadm starts is tried again per retry.

    Args:
        packages: the prepared keadm binary per arch; may be empty when the node has keadmBinDir.
        rejoin: reset and join nodes joined already; default the run's choice (--rejoin), else no.
        retry: default the run's choice (--retries, --retry-delay), else RetryPolicy().
    Returns:
        Result whose `result` is the node's NodeOutcome; failed unless the node is ok or skipped.
    """
    host = task.host
    outcome = NodeOutcome(node=host.name, address=host_port(host.hostname or "", host.port))
    if _stop_requested(task):
        outcome.reason = "run interrupted before this node started"
        return Result(host=host, result=outcome, failed=False)
    settings = run_options(task.nornir.config)
    rejoin = bool(settings.get("rejoin", False)) if rejoin is None else rejoin
    retry = retry or settings.get("retry") or RetryPolicy()
    log = node_logger(host.name)
    started = time.monotonic()
    try:
        while True:
            first_result = len(task.results)
            failure = _attempt(task, outcome, packages or {}, rejoin=rejoin)
            if failure is None:
                break
            stage = outcome.stage or Stage.CONNECT
            retried = is_transient(failure.status, stage, failure.connection_lost)
            if not retried or outcome.attempts > retry.retries or _stop_requested(task):
                break
            pause = retry.pause_after(outcome.attempts)
            log.warning(
                "attempt %d failed at stage %s (%s); trying again in %.1f s",
                *(outcome.attempts, stage, outcome.reason, pause),
            )
            host.close_connections()
            # The failed attempt's stage results go: the node's results are its last attempt's.
            del task.results[first_result:]
            if _wait_unless_stopped(task, pause):
                break
            outcome.attempts += 1
            log.info("attempt %d", outcome.attempts)
    finally:
        outcome.duration_s = time.monotonic() - started
        host.close_connections()
    failed = outcome.status not in (Status.OK, Status.SKIPPED)
    return Result(host=host, result=outcome, failed=failed, changed=bool(outcome.changed))


def _attempt(
    task: Task, outcome: NodeOutcome, packages: Mapping[str, PreparedBinary], *, rejoin: bool
) -> _Failure | None:
    """One try of the node's stages; fills outcome in. Returns the failure, None when the node
    ended ok or skipped."""
    host = task.host
    log = node_logger(host.name)
    stage = Stage.CONNECT

    def step(this_stage: Stage, subtask: Callable[..., Result], **kwargs: Any) -> Any:
        nonlocal stage
        stage = this_stage
        if _stop_requested(task):
            raise CommandInterrupted(f"run interrupted before stage {this_stage} started")
        log.info("stage %s", this_stage)
        return task.run(task=subtask, name=str(this_stage), **kwargs)[0].result

    outcome.status, outcome.stage, outcome.reason, outcome.exit_code = (
        Status.SKIPPED,
        None,
        None,
        None,
    )
    try:
        step(Stage.CONNECT, connect)
        copy_from = dir_files(Path(host.data["copy_from"])) if host.data["copy_from"] else []
        keadm = _keadm_per_arch(host.data, packages)
        # Every file the node may need, keadm for each arch: the probe learns the arch too.
        copy_from_versions = file_versions(copy_from)
        candidates = [*copy_from_versions, *file_versions(list(keadm.values()))]
        parts = part_paths([*copy_from, *keadm.values()], candidates)
        facts = step(Stage.ARCH, probe_node, versions=candidates, parts=parts)
        outcome.arch = facts.arch
        reset_first = facts.joined and is_join(reveal(host.data.get("keadm_cmd")) or "")
        if reset_first and not rejoin:
            raise _Skip(ALREADY_JOINED)
        step(Stage.STAGE_DIR, stage_dir, verdict=facts.staging)
        own_keadm = host.data["keadm_bin_dir"] is not None
        files = copy_from if own_keadm else [*copy_from, keadm[outcome.arch]]
        changed = step(Stage.UPLOAD, upload_files, files=files, remote_state=facts.remote)
        outcome.changed += [path for path in changed if path not in outcome.changed]
        workdir, sha = _keadm_location(host.data, packages, outcome.arch)
        if reset_first:
            log.info("%s: keadm reset first (--rejoin)", ALREADY_JOINED)
            reset = reset_before_rejoin(host.data.get("keadm_version"))
            step(Stage.RESET, run_keadm, workdir=workdir, binary_sha256=sha, keadm_cmd=reset)
        if host.data["pre_run"]:
            step(Stage.PRE_RUN, pre_run)
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
        return None
    except _Skip as skip:
        outcome.status, outcome.reason = Status.SKIPPED, str(skip)
        log.info("skipped: %s", skip)
        return None
    except (NornirSubTaskError, CommandInterrupted) as error:
        cause = error.result[0].exception if isinstance(error, NornirSubTaskError) else error
        failure = _failure(cause or error)
        lost = failure.connection_lost or _connection_lost(task)
        failure = dataclasses.replace(failure, connection_lost=lost)
        outcome.status, outcome.exit_code = failure.status, failure.exit_code
        # Reasons quote exception text, which may quote a command line: mask it at the source.
        outcome.reason = mask_secrets(failure.reason, host_secrets(host.data))
        outcome.stage = stage
        if outcome.status is Status.FAILED and stage is Stage.POST_RUN:
            outcome.reason = f"{outcome.reason} (keadm itself succeeded)"
        log.log(logging.ERROR, "%s at stage %s: %s", outcome.status, stage, outcome.reason)
        return failure


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
