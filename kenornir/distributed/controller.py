"""The controller's side of a --broker run: send each selected node to its queue as one Celery
task, keep at most maxRunNum in flight, and record every node through the run's RunRecorder as a
local run does, from what its worker reports.

Nothing is lost: a node whose worker stops reporting ends failed ("worker NAME lost"), a node no
worker takes ends unreachable ("no worker for site NAME"), both after the worker timeout and
revoked so that no worker runs them later; on a stop the queued nodes are revoked and the running
ones are stopped on their nodes by their workers, and their outcomes are waited for.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Celery, states
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from kenornir.config import BatchConfig, NodeConfig
from kenornir.config.portable import config_text, node_texts, travelling_secret_fields
from kenornir.distributed.broker import TASK_NAME, queue_for, redis_backend
from kenornir.distributed.job import PROGRESS, NodeDone, NodeJob, Progress
from kenornir.outcome import NodeOutcome, Stage, Status
from kenornir.report import RunRecorder

if TYPE_CHECKING:
    from kenornir.batch import RunOptions
    from kenornir.packages import KeadmPackage

logger = logging.getLogger(__name__)
DEFAULT_WORKER_TIMEOUT_S = 60.0
_POLL_S = 0.2
# What the broker's clients raise when it is away (kombu wraps redis-py's errors, mostly).
BROKER_ERRORS = (OSError, RedisError, OperationalError)
_ASK_WORKERS_EVERY_S = 2.0
_ASK_WORKERS_TIMEOUT_S = 1.0


def portable_nodes(batch: BatchConfig, ssh_config: Path | None) -> dict[str, str]:
    """Each node's part of the config, as its worker gets it; warns once about the secrets
    written in the file, which travel with it.

    Raises:
        ConfigError: the config file cannot be read again.
    """
    texts = node_texts(batch.source, batch, ssh_config=ssh_config)
    travelling = travelling_secret_fields(config_text(batch.source), batch.secrets)
    if travelling:
        logger.warning(
            "secrets written in the config travel through the broker to the workers: %s "
            "(write them as ${NAME} and set NAME in the workers' environment)",
            ", ".join(travelling),
        )
    return texts


def run_remote(
    app: Celery,
    batch: BatchConfig,
    names: Sequence[str],
    texts: Mapping[str, str],
    *,
    packages: Mapping[str, KeadmPackage],
    options: RunOptions,
    recorder: RunRecorder,
    stop_event: threading.Event,
) -> None:
    """Run the named nodes on the workers of app's broker, each as its part of the config in
    texts (portable_nodes); every outcome goes to recorder."""
    from kenornir.batch import ssh_options

    ssh = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in ssh_options(options).items()
    }
    digests = {arch: package.binary_sha256 for arch, package in packages.items()}
    jobs = {
        name: NodeJob(
            node=name,
            config_text=texts[name],
            source=batch.source,
            packages=digests,
            ssh=ssh,
            transfer=options.transfer,
            retries=options.retries,
            retry_delay=options.retry_delay,
            rejoin=options.rejoin,
            verify_checksum=options.verify_checksum,
            beat_s=min(2.0, options.worker_timeout / 5),
        )
        for name in names
    }
    nodes = {node.name: node for node in batch.nodes}
    dispatcher = Dispatcher(
        app,
        jobs,
        nodes,
        recorder,
        stop_event,
        in_flight=options.workers or batch.max_run_num,
        worker_timeout=options.worker_timeout,
    )
    dispatcher.run(names)


@dataclass
class _Flight:
    """A node sent to a queue, as far as the controller knows."""

    node: NodeConfig
    task_id: str
    queue: str
    sent: float
    worker: str | None = None
    stages_shown: int = 0
    beat: int = -1
    beat_seen: float = 0.0
    log: str = ""
    last_stage: str | None = None
    opened: bool = False  # its node log, and the terminal's count of it as running


class _QueueWatch:
    """Which queues have a worker, asked of the workers every few seconds in the background."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.served_at: dict[str, float] = {}
        self.answered_at: float | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="kenornir-queues", daemon=True)
        self._thread.start()

    def unserved_for(self, queue: str, since: float, now: float) -> float:
        """How long queue has had no worker since `since`; 0 when that is not known yet."""
        with self.lock:
            if self.answered_at is None or now - self.answered_at > 3 * _ASK_WORKERS_EVERY_S:
                return 0.0  # no fresh answer: nothing can be said
            return now - max(since, self.served_at.get(queue, since))

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            try:
                inspect = self.app.control.inspect(timeout=_ASK_WORKERS_TIMEOUT_S)
                replies: Mapping[str, Sequence[Mapping[str, Any]]] = inspect.active_queues() or {}
            except Exception as exc:  # the broker is away: no answer this time
                logger.debug("asking workers for their queues: %s", exc)
            else:
                now = time.monotonic()
                with self.lock:
                    self.answered_at = now
                    for queues in replies.values():
                        for queue in queues:
                            self.served_at[str(queue.get("name"))] = now
            if self._stopped.wait(_ASK_WORKERS_EVERY_S):
                return


class _News:
    """Wakes the controller as soon as a worker reports: the Redis result backend publishes every
    state it stores on the task's key, so waiting on those channels replaces polling on a clock."""

    def __init__(self, app: Celery) -> None:
        self.backend = redis_backend(app)
        self.pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
        self.followed: set[str] = set()

    def follow(self, task_id: str) -> None:
        key = self.backend.get_key_for_task(task_id)
        self.pubsub.subscribe(key)
        self.followed.add(key)

    def forget(self, task_id: str) -> None:
        key = self.backend.get_key_for_task(task_id)
        if key in self.followed:
            self.followed.discard(key)
            self.pubsub.unsubscribe(key)

    def wait(self, timeout: float) -> None:
        """Until a followed task reports or timeout passes; every report waiting is taken."""
        if not self.followed:
            time.sleep(timeout)
            return
        if self.pubsub.get_message(timeout=timeout) is not None:
            while self.pubsub.get_message(timeout=0) is not None:
                pass

    def close(self) -> None:
        with contextlib.suppress(*BROKER_ERRORS):  # the broker may be gone: nothing to undo
            self.pubsub.close()


class Dispatcher:
    """One --broker run's nodes, sent and followed to their outcomes."""

    def __init__(
        self,
        app: Celery,
        jobs: Mapping[str, NodeJob],
        nodes: Mapping[str, NodeConfig],
        recorder: RunRecorder,
        stop_event: threading.Event,
        *,
        in_flight: int,
        worker_timeout: float,
    ) -> None:
        self.app = app
        self.jobs = jobs
        self.nodes = nodes
        self.recorder = recorder
        self.stop_event = stop_event
        self.in_flight = in_flight
        self.worker_timeout = worker_timeout
        self.flights: dict[str, _Flight] = {}
        self._revoked = False
        self.news = _News(app)

    def run(self, names: Sequence[str]) -> None:
        """Every node of names ends recorded, unless the run is stopped before it is sent."""
        waiting = deque(names)
        watch = _QueueWatch(self.app)
        down_since: float | None = None
        try:
            while self.flights or (waiting and not self.stop_event.is_set()):
                try:
                    self._step(waiting, watch)
                    down_since = None
                except BROKER_ERRORS as exc:
                    now = time.monotonic()
                    if down_since is None:
                        down_since = now
                        logger.warning("the broker does not answer: %s (trying again)", exc)
                    elif now - down_since >= self.worker_timeout:
                        self._abandon(waiting, f"{type(exc).__name__}: {exc}")
                        return
                    time.sleep(_POLL_S)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the workers
            for flight in list(self.flights.values()):
                stopped = f"the controller stopped waiting for {_who(flight)}"
                self._give_up(flight, Status.INTERRUPTED, stopped)
        finally:
            watch.close()
            self.news.close()

    def _step(self, waiting: deque[str], watch: _QueueWatch) -> None:
        if self.stop_event.is_set() and not self._revoked:
            self._revoke_all()
        while waiting and len(self.flights) < self.in_flight and not self.stop_event.is_set():
            self._send(self.nodes[waiting[0]])
            waiting.popleft()  # only once it is sent: a send that fails is tried again
        self._poll(watch)
        self.news.wait(_POLL_S)

    def _abandon(self, waiting: deque[str], error: str) -> None:
        """The broker stayed away for the worker timeout: every node ends failed, saying so."""
        logger.warning("the broker stayed away for %g s: giving up", self.worker_timeout)
        for flight in list(self.flights.values()):
            reason = f"lost touch with the broker ({error}): how the node ended is not known"
            self._give_up(flight, Status.FAILED, reason, revoke=False)
        for name in waiting:
            flight = _Flight(self.nodes[name], "", queue_for(self.nodes[name].site), 0.0)
            self.flights[flight.task_id] = flight
            reason = f"not sent: lost touch with the broker ({error})"
            self._give_up(flight, Status.FAILED, reason, revoke=False)
        waiting.clear()

    def _send(self, node: NodeConfig) -> None:
        task_id = str(uuid.uuid4())
        queue = queue_for(node.site)
        self.news.follow(task_id)  # before the task exists: no report can be missed
        self.app.send_task(
            TASK_NAME, args=[self.jobs[node.name].to_message()], queue=queue, task_id=task_id
        )
        self.flights[task_id] = _Flight(node, task_id, queue, time.monotonic())

    def _poll(self, watch: _QueueWatch) -> None:
        backend = redis_backend(self.app)
        ids = list(self.flights)
        if not ids:
            return
        raw = backend.mget([backend.get_key_for_task(task_id) for task_id in ids])
        now = time.monotonic()
        for task_id, value in zip(ids, raw, strict=True):
            flight = self.flights[task_id]
            meta: dict[str, Any] = backend.decode_result(value) if value else {}
            self._update(flight, meta.get("status"), meta.get("result"), watch, now)
            lost = flight.worker is not None and now - flight.beat_seen >= self.worker_timeout
            if lost and task_id in self.flights:
                silent = f"no word from it for {self.worker_timeout:g} s"
                self._give_up(flight, Status.FAILED, f"{_who(flight)} lost ({silent})")

    def _update(
        self, flight: _Flight, status: object, result: Any, watch: _QueueWatch, now: float
    ) -> None:
        """One node's state as the result backend holds it (no key yet: still queued)."""
        try:
            if status == PROGRESS:
                self._progress(flight, Progress.from_message(result), now)
                return
            if status == states.SUCCESS:
                self._done(flight, NodeDone.from_message(result))
                return
        except (KeyError, TypeError, ValueError) as exc:
            unreadable = f"{_who(flight)} sent a report this controller cannot read ({exc!r})"
            self._give_up(flight, Status.FAILED, f"{unreadable}: kenornir versions differ?")
            return
        if status == states.FAILURE:
            self._give_up(flight, Status.FAILED, f"{_who(flight)} failed to run it: {result}")
        elif status == states.REVOKED:  # a worker dropped it: the run was stopped
            self._give_up(flight, *_stopped(flight), revoke=False)
        elif flight.worker is None:
            self._check_queue(flight, watch, now)

    def _progress(self, flight: _Flight, progress: Progress, now: float) -> None:
        if flight.worker is None:
            flight.worker = progress.worker
            flight.beat_seen = now
            self._open(flight, f"started on worker {progress.worker}")
        if progress.beat != flight.beat:
            flight.beat, flight.beat_seen = progress.beat, now
        for stage in progress.stages[flight.stages_shown :]:
            self.recorder.stage_started(flight.node.name, stage)
            flight.last_stage = stage
        flight.stages_shown = len(progress.stages)
        flight.log = progress.log

    def _done(self, flight: _Flight, done: NodeDone) -> None:
        if flight.worker is None:
            flight.worker = done.outcome.worker
            self._open(flight, f"started on worker {done.outcome.worker}")
        self.recorder.node_log_text(flight.node.name, done.log, flight.node.secrets)
        self._record(flight, done.outcome)
        self.app.AsyncResult(flight.task_id).forget()

    def _check_queue(self, flight: _Flight, watch: _QueueWatch, now: float) -> None:
        if watch.unserved_for(flight.queue, flight.sent, now) < self.worker_timeout:
            return
        where = f"site {flight.node.site}" if flight.node.site else f"queue {flight.queue}"
        self._open(flight, "was taken by no worker")
        self._give_up(flight, Status.UNREACHABLE, f"no worker for {where}")

    def _give_up(
        self, flight: _Flight, status: Status, reason: str, *, revoke: bool = True
    ) -> None:
        """End the node here: revoked, so that no worker runs it or goes on with it."""
        if revoke:
            try:
                self.app.control.revoke(flight.task_id)
                self.app.backend.mark_as_revoked(flight.task_id, reason)
            except BROKER_ERRORS as exc:  # recorded all the same; a worker may still run it
                logger.warning("node %s: not revoked: %s", flight.node.name, exc)
        if not flight.opened:
            self._open(flight, "was not started")
        self.recorder.node_log_text(flight.node.name, flight.log, flight.node.secrets)
        stage = Stage(flight.last_stage) if flight.last_stage in set(Stage) else None
        outcome = NodeOutcome(
            flight.node.name,
            flight.node.ssh.address,
            status=status,
            stage=stage,
            reason=reason,
            worker=flight.worker,
        )
        self._record(flight, outcome)

    def _revoke_all(self) -> None:
        """On a stop: running nodes are stopped by their workers; queued ones are dropped (the
        run's report says they never started)."""
        for flight in list(self.flights.values()):
            if flight.worker is None:
                self.app.control.revoke(flight.task_id)
                self.app.backend.mark_as_revoked(flight.task_id, "run interrupted")
                self._forget(flight)
        if self.flights:
            self.app.control.revoke(list(self.flights))
        self._revoked = True

    def _open(self, flight: _Flight, what: str) -> None:
        node = flight.node
        first = f"node {node.name} ({node.ssh.address}) {what}, queue {flight.queue}"
        self.recorder.node_started(node.name, first, node.secrets)
        flight.opened = True

    def _record(self, flight: _Flight, outcome: NodeOutcome) -> None:
        self._forget(flight)
        self.recorder.node_finished(outcome, flight.node.secrets)

    def _forget(self, flight: _Flight) -> None:
        del self.flights[flight.task_id]
        if flight.task_id:  # "" for a node that was never sent
            with contextlib.suppress(*BROKER_ERRORS):  # the broker gone, nothing to undo
                self.news.forget(flight.task_id)


def _stopped(flight: _Flight) -> tuple[Status, str]:
    if flight.worker is None:
        return Status.SKIPPED, "run interrupted before this node started"
    return Status.INTERRUPTED, f"run interrupted; {_who(flight)} dropped it"


def _who(flight: _Flight) -> str:
    return f"worker {flight.worker}" if flight.worker else "its worker"
