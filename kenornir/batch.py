"""One batch run: validate, prepare packages, run join_node on the selected nodes, report."""

from __future__ import annotations

import contextlib
import fnmatch
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from nornir.core import Nornir
from nornir.core.configuration import Config
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.state import GlobalState
from nornir.core.task import AggregatedResult
from nornir.plugins.runners import ThreadedRunner

from kenornir.config import BatchConfig, TransferMode, load_config
from kenornir.connection import CONNECTION_NAME, KenornirSSH
from kenornir.connection.jumps import JumpPool
from kenornir.exit_codes import EXIT_OK, EXIT_PREPARE_FAILED
from kenornir.inventory import KeadmBatchInventory
from kenornir.outcome import NodeOutcome, Status
from kenornir.packages import KeadmPackage, PackageError, prepare_packages
from kenornir.report import (
    RUN_LOG_FILE,
    RunRecorder,
    Terminal,
    append_event,
    exit_code,
    failed_nodes_of,
    new_run_dir,
    route_library_logs,
    totals,
    write_report,
)
from kenornir.retry import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY_S, RetryPolicy
from kenornir.tasks.join import join_node
from kenornir.template import masked_url, url_secrets


class SelectionError(Exception):
    """The node selection matches nothing or names a run that does not exist."""


@dataclass(frozen=True)
class Selection:
    """Which nodes of the config to run: names/globs, labels, or the failures of a past run."""

    limit: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    rerun_failed: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    workers: int | None = None
    connect_timeout: float | None = None
    command_timeout: float | None = None
    host_key_policy: str | None = None
    known_hosts: Path | None = None
    cache_dir: Path | None = None
    verify_checksum: bool | None = None  # None: as the config says
    run_dir: Path | None = None
    transfer: TransferMode | None = None  # None: as the config says
    retries: int = DEFAULT_RETRIES  # tries again after a transient fault (kenornir.retry)
    retry_delay: float = DEFAULT_RETRY_DELAY_S
    rejoin: bool = False  # reset and join nodes joined already, instead of skipping them
    broker: str | None = None  # a Redis URL: run the nodes on kenornir workers (distributed)
    worker_timeout: float = 60.0  # a worker silent this long, or a queue without one, fails nodes
    ssh_config: Path | None = None  # the --ssh-config the config was loaded with


@dataclass
class BatchRun:
    run_dir: Path
    exit_code: int
    outcomes: list[NodeOutcome]
    report: dict[str, Any] = field(default_factory=dict)
    results: AggregatedResult | None = None  # Nornir's own, for print_result
    prepare_error: str | None = None  # why no node was started (exit 3)


def _as_config(config: str | Path | BatchConfig) -> BatchConfig:
    return config if isinstance(config, BatchConfig) else load_config(config)


def nornir_settings(
    config: str | Path | BatchConfig,
    *,
    workers: int | None = None,
    ssh: Mapping[str, Any] | None = None,
    stop_event: threading.Event | None = None,
    transfer: TransferMode | None = None,
    retry: RetryPolicy | None = None,
    rejoin: bool = False,
) -> dict[str, Any]:
    """InitNornir's keyword arguments for a batch config: `InitNornir(**nornir_settings(path))`.

    KeadmBatchInventory over the config's nodes, the threaded runner with num_workers =
    maxRunNum (InitNornir alone would use Nornir's default of 20), nornir's own log file off.

    Args:
        workers: parallel nodes; default the config's maxRunNum.
        ssh: run-wide SSH options (connect_timeout, command_timeout, host_key_policy,
            known_hosts, keepalive_seconds) for the kenornir_ssh connection plugin.
        stop_event: set it to stop the run: no new node starts, running commands are killed.
        transfer: how files reach nodes (auto, stream, sftp); default the config's `transfer`.
        retry: how join_node retries transient faults; default RetryPolicy().
        rejoin: join_node resets and joins nodes joined already instead of skipping them.
    """
    batch = _as_config(config)
    return {
        "runner": {"plugin": "threaded", "options": {"num_workers": workers or batch.max_run_num}},
        "inventory": {"plugin": "KeadmBatchInventory", "options": {"config": batch}},
        "logging": {"enabled": False},
        "user_defined": {
            "kenornir": {
                "ssh": dict(ssh or {}),
                "stop_event": stop_event,
                "transfer": transfer or batch.transfer,
                "retry": retry or RetryPolicy(),
                "rejoin": rejoin,
                # Nodes behind one jump host share its login (see connection.jumps).
                "jump_pool": JumpPool(),
            }
        },
    }


def init_nornir(
    config: str | Path | BatchConfig,
    *,
    workers: int | None = None,
    ssh: Mapping[str, Any] | None = None,
    stop_event: threading.Event | None = None,
    transfer: TransferMode | None = None,
    retry: RetryPolicy | None = None,
    rejoin: bool = False,
) -> Nornir:
    """A Nornir over the config's nodes (see nornir_settings for the arguments).

    What `InitNornir(**nornir_settings(...))` makes, built from the same settings without
    InitNornir's three scans of every installed package's entry points (about 6 ms of CPU per
    call): a kenornir worker builds one Nornir per node.
    """
    batch = _as_config(config)
    settings = nornir_settings(
        batch,
        workers=workers,
        ssh=ssh,
        stop_event=stop_event,
        transfer=transfer,
        retry=retry,
        rejoin=rejoin,
    )
    ConnectionPluginRegister.register(CONNECTION_NAME, KenornirSSH)
    return Nornir(
        inventory=KeadmBatchInventory(config=batch).load(),
        runner=ThreadedRunner(**settings["runner"]["options"]),
        config=Config.from_dict(**settings),
        data=GlobalState(),
    )


def selected_names(batch: BatchConfig, selection: Selection) -> list[str]:
    """Node names the selection keeps, in config order.

    Raises:
        SelectionError: nothing is left, or the rerun source cannot be read.
    """
    names = [node.name for node in batch.nodes]
    chosen = names
    if selection.rerun_failed is not None:
        try:
            wanted = set(failed_nodes_of(selection.rerun_failed))
        except (OSError, ValueError, KeyError) as exc:
            raise SelectionError(
                f"--rerun-failed: cannot read {selection.rerun_failed}: {exc}"
            ) from None
        chosen = [n for n in chosen if n in wanted]
        if not wanted:
            return []
    if selection.limit:
        chosen = [n for n in chosen if _matches(n, selection.limit)]
    if selection.exclude:
        chosen = [n for n in chosen if not _matches(n, selection.exclude)]
    if selection.labels:
        labels = {node.name: node.labels for node in batch.nodes}
        chosen = [n for n in chosen if all(labels[n].get(k) == v for k, v in selection.labels)]
    if not chosen:
        raise SelectionError("no node matches the selection (--limit/--exclude/--label)")
    return chosen


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@contextlib.contextmanager
def _stop_on_signals(stop_event: threading.Event, terminal: Terminal) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): stop gracefully. A second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        terminal.line("interrupted: no new node starts; stopping the running ones")

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def arches_to_prepare(batch: BatchConfig) -> list[str]:
    """Every arch of archGroup, unless every node brings its own keadm (keadmBinDir)."""
    return list(batch.keadm.arch_group) if batch.needs_packages else []


def prepare(
    batch: BatchConfig,
    options: RunOptions,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, KeadmPackage]:
    """The controller side of a run: a verified keadm for every arch (PackageError if not)."""
    keadm = batch.keadm
    verify = (
        keadm.download.verify_checksum
        if options.verify_checksum is None
        else (options.verify_checksum)
    )
    return prepare_packages(
        keadm.keadm_version or "",
        arches_to_prepare(batch),
        download=keadm.download.enable,
        base_url=keadm.download.url,
        offline_dir=Path(keadm.offline_package_dir) if keadm.offline_package_dir else None,
        cache_dir=options.cache_dir,
        verify_checksum=verify,
        progress=progress,
    )


def run_batch(
    config: str | Path | BatchConfig,
    selection: Selection = Selection(),
    options: RunOptions = RunOptions(),
    stream: TextIO | None = sys.stdout,
    *,
    progress: bool = False,
) -> BatchRun:
    """The whole batch. Raises ConfigError or SelectionError (exit 2).

    A package that cannot be prepared ends the run before any node is touched, with exit code
    3 and `prepare_error` set; the report then lists every node as skipped and no package.

    Node lines go to stream as they happen (with a progress bar when progress is set); the
    summary is the caller's to print.
    """
    batch = _as_config(config)
    names = selected_names(batch, selection)
    if not names:  # --rerun-failed of a run where every node ended ok: no new run at all
        return BatchRun(selection.rerun_failed or Path(), EXIT_OK, [])
    # The broker's password too: a library's error may quote the URL it could not reach.
    secrets = (*batch.secrets, *url_secrets(options.broker or ""))
    remote = None
    texts: dict[str, str] = {}
    if options.broker:  # Celery is imported for --broker runs only
        from kenornir.distributed.broker import connected_app
        from kenornir.distributed.controller import portable_nodes

        # BrokerError or ConfigError (exit 2) before any run dir.
        remote = connected_app(options.broker)
        texts = portable_nodes(batch, options.ssh_config)
    terminal = Terminal(stream, secrets, progress=progress, total=len(names))
    run_dir = new_run_dir(options.run_dir)
    restore_logging = route_library_logs(run_dir / RUN_LOG_FILE, secrets)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "run_id": run_dir.name,
        "config": batch.source,
        "selection": {**_jsonable(asdict(selection)), "nodes": names},
        "options": {**_jsonable(asdict(options)), "broker": _shown_broker(options)},
        "started": started.isoformat(),
    }
    append_event(run_dir, {"event": "run-start", **report}, secrets)
    stop_event = threading.Event()
    recorder = RunRecorder(run_dir, terminal)
    interrupted = False
    prepare_error: str | None = None
    results: AggregatedResult | None = None
    packages: dict[str, KeadmPackage] = {}
    try:
        try:
            packages = prepare(batch, options)
        except KeyboardInterrupt:
            interrupted = True
        except PackageError as exc:
            prepare_error = str(exc)
        if not interrupted and prepare_error is None:
            with _stop_on_signals(stop_event, terminal):
                if remote is not None:
                    from kenornir.distributed.controller import run_remote

                    run_remote(
                        remote,
                        batch,
                        names,
                        texts,
                        packages=packages,
                        options=options,
                        recorder=recorder,
                        stop_event=stop_event,
                    )
                else:
                    results = _run_here(
                        batch, names, packages, options, recorder=recorder, stop_event=stop_event
                    )
            interrupted = stop_event.is_set()
    finally:
        terminal.close()
        restore_logging()
    not_started = None
    if interrupted:
        not_started = "run interrupted before this node started"
    elif prepare_error is not None:
        not_started = "keadm packages could not be prepared"
    outcomes = _all_outcomes(batch, names, recorder.outcomes, not_started)
    code = exit_code([o for o in outcomes if o.node in names], interrupted)
    if prepare_error is not None:
        code = EXIT_PREPARE_FAILED
    report.update(
        finished=datetime.now(UTC).isoformat(),
        exit_code=code,
        totals=totals(outcomes),
        packages={arch: packages[arch].to_record() for arch in sorted(packages)},
        nodes=[o.to_record() for o in outcomes],
    )
    write_report(run_dir, report, secrets)
    append_event(run_dir, {"event": "run-end", "exit_code": code}, secrets)
    return BatchRun(run_dir, code, outcomes, report, results, prepare_error)


def _run_here(
    batch: BatchConfig,
    names: Sequence[str],
    packages: Mapping[str, KeadmPackage],
    options: RunOptions,
    *,
    recorder: RunRecorder,
    stop_event: threading.Event,
) -> AggregatedResult:
    """The nodes on this machine: Nornir's threaded runner, maxRunNum at a time."""
    nr = init_nornir(
        batch,
        workers=options.workers,
        ssh=ssh_options(options),
        stop_event=stop_event,
        transfer=options.transfer,
        retry=RetryPolicy(options.retries, options.retry_delay),
        rejoin=options.rejoin,
    )
    selected = nr.filter(filter_func=lambda host: host.name in set(names))
    try:
        return selected.with_processors([recorder]).run(
            task=join_node, name="join_node", packages=packages, on_failed=True
        )
    finally:
        nr.config.user_defined["kenornir"]["jump_pool"].close()


def _all_outcomes(
    batch: BatchConfig,
    names: Sequence[str],
    done: Mapping[str, NodeOutcome],
    not_started: str | None,
) -> list[NodeOutcome]:
    """One outcome per config node: the recorded ones, and the others with why they have none.

    not_started: why selected nodes may lack a record (interrupted, packages failed); without
    such a reason a selected node with no record is a failure, never silently skipped.
    """
    chosen = set(names)
    outcomes = []
    for node in batch.nodes:
        outcome = done.get(node.name)
        if outcome is None:
            outcome = NodeOutcome(node.name, node.ssh.address, reason="not selected")
            if node.name in chosen:
                outcome.reason = not_started or "no result recorded"
                outcome.status = Status.SKIPPED if not_started else Status.FAILED
        outcomes.append(outcome)
    return outcomes


def ssh_options(options: RunOptions) -> dict[str, Any]:
    """The kenornir_ssh connection plugin's run-wide options (nornir_settings' ssh)."""
    return {
        "connect_timeout": options.connect_timeout,
        "command_timeout": options.command_timeout,
        "host_key_policy": options.host_key_policy,
        "known_hosts": options.known_hosts,
    }


def _shown_broker(options: RunOptions) -> str | None:
    return masked_url(options.broker) if options.broker else None


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
