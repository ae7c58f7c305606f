"""Run outputs: live node lines, per-node logs, events.jsonl, report.json, summary, exit code."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Task

from kenornir.address import host_port
from kenornir.exit_codes import EXIT_INTERRUPTED, EXIT_NODES_FAILED, EXIT_OK
from kenornir.nodelog import NODE_LOGGER_PREFIX, node_logger
from kenornir.outcome import NodeOutcome, Stage, Status
from kenornir.secret import host_secrets
from kenornir.template import mask_record, mask_secrets

RUNS_ROOT = Path("kenornir-runs")
LATEST_LINK = "latest"
EVENTS_FILE = "events.jsonl"
REPORT_FILE = "report.json"
RUN_LOG_FILE = "run.log"
_STAGE_NAMES = {str(s) for s in Stage}


class RunDirError(Exception):
    """The run dir cannot be created; the message is one line for the user."""


def new_run_dir(run_dir: Path | None, runs_root: Path = RUNS_ROOT) -> Path:
    """`run_dir` itself when given, else a new `<runs_root>/<UTC timestamp>/` plus `latest`.

    Raises:
        RunDirError: it cannot be created (a file in the way, no permission, a full disk).
    """
    try:
        return _make_run_dir(run_dir, runs_root)
    except OSError as exc:
        where = exc.filename or run_dir or runs_root
        raise RunDirError(f"cannot create run dir {where}: {exc.strerror or exc}") from None


def _make_run_dir(run_dir: Path | None, runs_root: Path) -> Path:
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runs_root.mkdir(parents=True, exist_ok=True)
    path = runs_root / stamp
    suffix = 1
    while path.exists():  # two runs in the same second
        suffix += 1
        path = runs_root / f"{stamp}-{suffix}"
    path.mkdir()
    latest = runs_root / LATEST_LINK
    temporary = runs_root / f".{LATEST_LINK}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(path.name)
    temporary.replace(latest)  # atomic: `latest` never points nowhere
    return path


class _MaskingFormatter(logging.Formatter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record), self.secrets)


def route_library_logs(run_log: Path, secrets: Sequence[str]) -> Callable[[], None]:
    """Send nornir's and paramiko's loggers to the run log, never to the terminal.

    Returns the function that undoes it.
    """
    handler = logging.FileHandler(run_log, encoding="utf-8")
    handler.setFormatter(_MaskingFormatter(secrets))
    saved = []
    for name in ("nornir", "paramiko", "kenornir"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    node_root = logging.getLogger(NODE_LOGGER_PREFIX)
    saved.append((node_root, node_root.propagate, node_root.level))
    node_root.propagate = False  # node lines go to node logs only

    def restore() -> None:
        for logger, propagate, level in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()

    return restore


class Terminal:
    """Everything the run prints, one whole line at a time, from any worker thread.

    With a progress bar (on a TTY) the bottom line shows done / failed / running counts and the
    elapsed time; node lines scroll above it.
    """

    def __init__(
        self,
        stream: TextIO | None,
        secrets: Sequence[str],
        *,
        progress: bool = False,
        total: int = 0,
    ) -> None:
        self.stream = stream
        self.secrets = secrets
        self.progress = progress and stream is not None
        self.total = total
        self.done = self.failed = self.running = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()

    def line(self, text: str) -> None:
        with self.lock:
            self._write(mask_secrets(text, self.secrets) + "\n")

    def node_started(self) -> None:
        with self.lock:
            self.running += 1
            self._write("")
        if self.progress and self._ticker is None:
            self._ticker = threading.Thread(
                target=self._tick, name="kenornir-progress", daemon=True
            )
            self._ticker.start()

    def node_finished(self, failed: bool) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1
            self.failed += failed
            self._write("")

    def close(self) -> None:
        """Stop redrawing and leave the terminal on a clean line."""
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.progress and self.stream is not None:
            with self.lock:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def progress_text(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        width = 24
        filled = width * self.done // self.total if self.total else 0
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"[{bar}] {self.done}/{self.total} done, {self.failed} failed, "
            f"{self.running} running, {elapsed // 60:02d}:{elapsed % 60:02d}"
        )

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        if self.progress:
            # Clear the bar, print the line, draw the bar again below it.
            text = "\r\033[K" + text + self.progress_text()
        if text:
            self.stream.write(text)
            self.stream.flush()

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            with self.lock:
                self._write("")


@dataclass
class RunRecorder:
    """Nornir processor: node logs, live lines and events.jsonl, as nodes go.

    Thread-safe: the runner calls it from every worker thread at once.
    """

    run_dir: Path
    terminal: Terminal
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _handlers: dict[str, logging.FileHandler] = field(default_factory=dict)
    _stage_started: dict[tuple[str, str], float] = field(default_factory=dict)

    def task_started(self, task: Task) -> None:
        pass

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        pass

    def task_instance_started(self, task: Task, host: Host) -> None:
        where = f"{host.hostname}:{host.port or 22}"
        self.node_started(host.name, f"node {host.name} ({where}) started", host_secrets(host.data))

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        if task.name not in _STAGE_NAMES:
            return
        with self._lock:
            self._stage_started[(host.name, task.name)] = time.monotonic()
        self.stage_started(host.name, task.name)

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        if task.name not in _STAGE_NAMES:
            return
        with self._lock:
            began = self._stage_started.pop((host.name, task.name), time.monotonic())
        verdict = "failed" if result.failed else "done"
        node_logger(host.name).info(
            "stage %s %s in %.2fs", task.name, verdict, time.monotonic() - began
        )

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        self.node_finished(outcome_of(host, result), host_secrets(host.data))

    # The same record keeping for nodes run elsewhere (kenornir.distributed): by node name.

    def node_started(self, name: str, first_line: str, secrets: Sequence[str]) -> None:
        """Open the node's log with first_line and count the node as running."""
        handler = logging.FileHandler(self.run_dir / f"{name}.log", encoding="utf-8")
        handler.setFormatter(_MaskingFormatter(secrets))
        logger = node_logger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        with self._lock:
            self._handlers[name] = handler
        logger.info("%s", first_line)
        self.terminal.node_started()

    def stage_started(self, name: str, stage: str) -> None:
        self.terminal.line(f"{name}: {stage}")

    def node_log_text(self, name: str, text: str, secrets: Sequence[str]) -> None:
        """Add lines logged elsewhere (timestamped there) to the node's log as they are."""
        with self._lock:
            handler = self._handlers.get(name)
        if handler is None or handler.stream is None or not text:
            return
        handler.acquire()
        try:
            handler.stream.write(mask_secrets(text.rstrip("\n") + "\n", secrets))
            handler.flush()
        finally:
            handler.release()

    def node_finished(self, outcome: NodeOutcome, secrets: Sequence[str]) -> None:
        """Log, record and show the node's outcome, and close its log."""
        logger = node_logger(outcome.node)
        logger.info(
            "node %s: %s%s",
            outcome.node,
            outcome.status,
            f" ({outcome.reason})" if outcome.reason else "",
        )
        with self._lock:
            self.outcomes[outcome.node] = outcome
            handler = self._handlers.pop(outcome.node, None)
            append_event(self.run_dir, outcome.to_record(), secrets)
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
        self.terminal.line(outcome_line(outcome))
        self.terminal.node_finished(outcome.status not in (Status.OK, Status.SKIPPED))


def outcome_of(host: Host, result: MultiResult) -> NodeOutcome:
    """The node's outcome: join_node's own, or one made from any other task's result."""
    if result and isinstance(result[0].result, NodeOutcome):
        return result[0].result
    failed = result.failed
    reason = None
    if failed:
        errors = [r.exception for r in result if r.exception is not None]
        reason = str(errors[-1]) if errors else "task failed"
    return NodeOutcome(
        node=host.name,
        address=host_port(host.hostname or "", host.port),
        status=Status.FAILED if failed else Status.OK,
        reason=reason,
        changed=["(changed)"] if result.changed else [],
    )


def outcome_line(outcome: NodeOutcome) -> str:
    line = f"{outcome.node}: {outcome.status}"
    if outcome.stage is not None:
        line += f" at {outcome.stage}"
    if outcome.reason and outcome.status is not Status.OK:
        line += f": {outcome.reason}"
    tries = f"{outcome.attempts} attempts, " if outcome.attempts > 1 else ""
    return line + f" ({tries}{outcome.duration_s:.1f}s)"


def append_event(run_dir: Path, record: Mapping[str, Any], secrets: Sequence[str]) -> None:
    """Append one line to events.jsonl and flush it to disk: a crash loses nothing recorded."""
    line = json.dumps(mask_record(record, secrets), sort_keys=True) + "\n"
    with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as events:
        events.write(line)
        events.flush()
        os.fsync(events.fileno())


def exit_code(outcomes: Iterable[NodeOutcome], interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    bad = {Status.FAILED, Status.UNREACHABLE, Status.INTERRUPTED}
    return EXIT_NODES_FAILED if any(o.status in bad for o in outcomes) else EXIT_OK


def write_report(run_dir: Path, report: Mapping[str, Any], secrets: Sequence[str]) -> Path:
    path = run_dir / REPORT_FILE
    temporary = run_dir / f".{REPORT_FILE}.tmp"
    temporary.write_text(json.dumps(mask_record(report, secrets), indent=2) + "\n", "utf-8")
    temporary.replace(path)
    return path


def totals(outcomes: Iterable[NodeOutcome]) -> dict[str, int]:
    counted = Counter(str(o.status) for o in outcomes)
    return {str(s): counted.get(str(s), 0) for s in Status}


def summary_table(outcomes: Sequence[NodeOutcome], run_dir: Path) -> str:
    """The end-of-run table: one row per node, totals, and where the logs are. A TRIES column
    appears when a node needed more than one attempt (retried transient faults), a WORKER
    column in a --broker run."""
    retried = any(o.attempts > 1 for o in outcomes)
    distributed = any(o.worker for o in outcomes)
    header = ("NODE", "ADDRESS", "ARCH", "STATUS", "STAGE", "TIME", *(("TRIES",) * retried))
    header += (*(("WORKER",) * distributed), "REASON")
    rows = [
        (
            o.node,
            o.address,
            o.arch or "-",
            str(o.status),
            str(o.stage) if o.stage else "-",
            f"{o.duration_s:.1f}s",
            *((str(o.attempts),) * retried),
            *((o.worker or "-",) * distributed),
            (o.reason or "") if o.status is not Status.OK else "",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in [header, *rows]
    ]
    counts = ", ".join(f"{n} {s}" for s, n in totals(outcomes).items() if n)
    lines.append("")
    lines.append(f"{len(outcomes)} nodes: {counts or 'none'}")
    lines.append(f"logs and report: {run_dir}")
    return "\n".join(line.rstrip() for line in lines)


def failed_nodes_of(run_dir: Path) -> list[str]:
    """Nodes of a run to rerun: selected there and not recorded as ok.

    report.json when present; else events.jsonl, where a selected node without a record
    (the run died before it finished) counts as not ok.
    """
    report_path = run_dir / REPORT_FILE
    if report_path.exists():
        report = json.loads(report_path.read_text("utf-8"))
        chosen = set(report["selection"]["nodes"])
        return [n["node"] for n in report["nodes"] if n["node"] in chosen and n["status"] != "ok"]
    events_path = run_dir / EVENTS_FILE
    if not events_path.exists():
        raise FileNotFoundError(f"{run_dir} holds neither {REPORT_FILE} nor {EVENTS_FILE}")
    selected: list[str] = []
    ok: set[str] = set()
    for line in events_path.read_text("utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if event.get("event") == "run-start":
            selected = list(event["selection"]["nodes"])
        elif "node" in event and event.get("status") == "ok":
            ok.add(event["node"])
    return [name for name in selected if name not in ok]
