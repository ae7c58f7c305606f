"""`kenornir worker`: a Celery worker running kenornir's join_node on the nodes sent to its queues.

The pool is Celery's threads pool: a node's work is SSH I/O. Each node runs in a one-node Nornir
built from the node's part of the config (kenornir.config.portable), validated here with this
machine's environment (`${NAME}` secrets) and files (keys, copyFrom, hooks, offline packages),
with packages prepared here by the same code and checksum rules as on the controller, and used
only when their digests are the ones the controller verified.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery, states
from celery.exceptions import Ignore
from celery.worker import state as worker_state

from kenornir.batch import RunOptions, init_nornir, prepare
from kenornir.config import BatchConfig, ConfigError, parse_config
from kenornir.connection.jumps import JumpPool
from kenornir.distributed.broker import TASK_NAME, celery_app, queue_for
from kenornir.distributed.job import PROGRESS, NodeDone, NodeJob, Progress
from kenornir.nodelog import NODE_LOGGER_PREFIX
from kenornir.outcome import NodeOutcome, Status
from kenornir.packages import KeadmPackage, PackageError
from kenornir.report import RunRecorder, Terminal
from kenornir.retry import RetryPolicy
from kenornir.tasks.join import join_node

logger = logging.getLogger(__name__)
_TICK_S = 0.25  # how often running nodes are checked for a revoke and a heartbeat due


@dataclass(frozen=True)
class WorkerSettings:
    broker_url: str
    name: str = field(default_factory=socket.gethostname)
    sites: tuple[str, ...] = ()
    concurrency: int = 10
    cache_dir: Path | None = None

    @property
    def queues(self) -> list[str]:
        """Its sites' queues; the common queue (nodes without a site) when it has no site. A
        worker inside a site rarely reaches nodes outside it: it must not take theirs."""
        return [queue_for(site) for site in self.sites] or [queue_for(None)]

    @property
    def celery_hostname(self) -> str:
        """Celery's node name (unique among workers): NAME@host unless the name has an @."""
        return self.name if "@" in self.name else f"{self.name}@{socket.gethostname()}"


def run_worker(settings: WorkerSettings) -> None:
    """Run until stopped (SIGTERM or Ctrl-C: finish the running nodes first, as Celery does)."""
    app = celery_app(settings.broker_url)
    runner = NodeRunner(app, settings)

    @app.task(name=TASK_NAME, bind=True)
    def join_node_task(task: Any, message: dict[str, Any]) -> dict[str, Any]:
        return runner.run(str(task.request.id), NodeJob.from_message(message))

    # Node lines are masked by the node log's own handler; Celery's log must not get them raw.
    logging.getLogger(NODE_LOGGER_PREFIX).propagate = False
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.concurrency}",
                f"--hostname={settings.celery_hostname}",
                f"--queues={','.join(settings.queues)}",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ]
        )
    finally:
        runner.close()


@dataclass
class _Running:
    """A node this worker is at work on."""

    job: NodeJob
    progress: Progress
    log_path: Path
    stop: threading.Event = field(default_factory=threading.Event)
    next_beat: float = 0.0

    def stage_reached(self, stage: str) -> None:
        """A new stage is reported at the next tick, not at the next heartbeat."""
        self.progress.stages.append(stage)
        self.next_beat = 0.0


class _StageRecorder(RunRecorder):
    """The run recorder of a one-node run here: the node log in a scratch dir, the stages to
    the node's progress report instead of a terminal."""

    def __init__(self, run_dir: Path, on_stage: Callable[[str], None]) -> None:
        super().__init__(run_dir, Terminal(None, ()))
        self.on_stage = on_stage

    def stage_started(self, name: str, stage: str) -> None:
        self.on_stage(stage)


class NodeRunner:
    """Runs the nodes of one worker process, and reports each one's progress while it runs."""

    def __init__(self, app: Celery, settings: WorkerSettings) -> None:
        self.app = app
        self.settings = settings
        self.jump_pool = JumpPool()  # nodes behind one jump host share its login, across tasks
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._packages: dict[tuple[Any, ...], dict[str, KeadmPackage]] = {}
        self._packages_lock = threading.Lock()
        self._closed = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="kenornir-beat", daemon=True)
        self._beater.start()

    def run(self, task_id: str, job: NodeJob) -> dict[str, Any]:
        """The task: one node, start to end. A task the controller gave up on is dropped."""
        if self.app.backend.get_task_meta(task_id).get("status") == states.REVOKED:
            logger.info("node %s: dropped, the controller revoked it", job.node)
            raise Ignore()
        with tempfile.TemporaryDirectory(prefix="kenornir-node-") as scratch:
            progress = Progress(self.settings.name)
            running = _Running(job, progress, Path(scratch) / f"{job.node}.log")
            with self._lock:
                self._running[task_id] = running
                self._report(task_id, running, time.monotonic())
            try:
                outcome = self._join(job, running, Path(scratch))
            finally:
                # Under the lock: no progress report can land after the result is stored.
                with self._lock:
                    del self._running[task_id]
            outcome.worker = self.settings.name
            return NodeDone(outcome, _text_of(running.log_path)).to_message()

    def close(self) -> None:
        self._closed.set()
        self._beater.join()
        self.jump_pool.close()

    def _join(self, job: NodeJob, running: _Running, scratch: Path) -> NodeOutcome:
        name = self.settings.name
        try:
            batch = parse_config(
                job.config_text, source=f"{job.source} (node {job.node})", env=os.environ
            )
        except ConfigError as exc:
            reason = f"the config does not validate on worker {name}: {exc.errors[0]}"
            return NodeOutcome(job.node, "-", status=Status.FAILED, reason=reason)
        address = batch.nodes[0].ssh.address
        try:
            packages = self._packages_for(batch, job)
        except PackageError as exc:
            reason = str(exc)
            return NodeOutcome(job.node, address, status=Status.FAILED, reason=reason)
        nr = init_nornir(
            batch,
            workers=1,
            ssh=job.ssh,
            stop_event=running.stop,
            transfer=job.transfer,  # type: ignore[arg-type]
            retry=RetryPolicy(job.retries, job.retry_delay),
            rejoin=job.rejoin,
        )
        nr.config.user_defined["kenornir"]["jump_pool"] = self.jump_pool
        recorder = _StageRecorder(scratch, running.stage_reached)
        nr.with_processors([recorder]).run(
            task=join_node, name="join_node", packages=packages, on_failed=True
        )
        recorded = recorder.outcomes.get(job.node)
        if recorded is None:
            reason = f"worker {name}: no result recorded"
            return NodeOutcome(job.node, address, status=Status.FAILED, reason=reason)
        return recorded

    def _packages_for(self, batch: BatchConfig, job: NodeJob) -> dict[str, KeadmPackage]:
        """The packages of the node's config, prepared once per worker, each binary the one the
        controller verified (PackageError otherwise)."""
        keadm = batch.keadm
        key = (
            keadm.keadm_version,
            keadm.arch_group,
            keadm.download,
            keadm.offline_package_dir,
            job.verify_checksum,
        )
        with self._packages_lock:
            if key not in self._packages:
                options = RunOptions(
                    cache_dir=self.settings.cache_dir, verify_checksum=job.verify_checksum
                )
                self._packages[key] = prepare(batch, options)
            packages = self._packages[key]
        return verified(packages, job.packages, self.settings.name)

    def _beat(self) -> None:
        """Stop the nodes whose task was revoked; report each running node's progress."""
        while not self._closed.wait(_TICK_S):
            now = time.monotonic()
            with self._lock:
                for task_id, running in self._running.items():
                    if task_id in worker_state.revoked:
                        running.stop.set()
                    if now >= running.next_beat:
                        self._report(task_id, running, now)

    def _report(self, task_id: str, running: _Running, now: float) -> None:
        progress = running.progress
        progress.beat += 1
        progress.log = _text_of(running.log_path)
        running.next_beat = now + running.job.beat_s
        try:
            self.app.backend.store_result(task_id, progress.to_message(), PROGRESS)
        except Exception as exc:  # the broker is away: the next beat tries again
            logger.warning("node %s: progress not reported: %s", running.job.node, exc)


def verified(
    packages: Mapping[str, KeadmPackage], wanted: Mapping[str, str], worker: str
) -> dict[str, KeadmPackage]:
    """packages, when each arch's binary has the sha256 the controller verified.

    Raises:
        PackageError: one is missing or differs.
    """
    for arch, sha256 in wanted.items():
        package = packages.get(arch)
        if package is None:
            raise PackageError(f"no keadm for {arch} was prepared on worker {worker}")
        if package.binary_sha256 != sha256:
            raise PackageError(
                f"keadm for {arch} prepared on worker {worker} has sha256 "
                f"{package.binary_sha256}, the controller verified {sha256}: not sent to any node"
            )
    return {arch: packages[arch] for arch in wanted}


def _text_of(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
