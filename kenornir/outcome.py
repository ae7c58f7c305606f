"""What happened to one node: its status, the stage that failed, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"  # the node answered, then something went wrong (auth included)
    UNREACHABLE = "unreachable"  # the node never answered
    INTERRUPTED = "interrupted"  # it was running when the run was stopped
    SKIPPED = "skipped"  # it never started, or was joined already (nothing to do)


class Stage(StrEnum):
    CONNECT = "connect"
    ARCH = "arch"
    STAGE_DIR = "stage-dir"
    UPLOAD = "upload"
    RESET = "reset"  # keadm reset before the join of a node joined already (--rejoin)
    PRE_RUN = "pre-run"
    KEADM = "keadm"
    POST_RUN = "post-run"


class StageFailed(Exception):
    """A node stage failed; the message is the one-line reason shown in the summary."""

    def __init__(
        self,
        reason: str,
        *,
        status: Status = Status.FAILED,
        exit_code: int | None = None,
        connection_lost: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.exit_code = exit_code
        self.connection_lost = connection_lost  # a transient fault (kenornir.retry)


@dataclass
class NodeOutcome:
    """The node record written to events.jsonl and report.json (see DESIGN.md)."""

    node: str
    address: str
    arch: str | None = None
    status: Status = Status.SKIPPED
    stage: Stage | None = None
    reason: str | None = None
    exit_code: int | None = None
    changed: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    attempts: int = 1  # tries, the retried transient faults included
    worker: str | None = None  # the Celery worker that ran the node (--broker runs)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NodeOutcome:
        """The outcome a record (to_record's) was made of."""
        values = dict(record)
        values["status"] = Status(values["status"])
        values["stage"] = None if values["stage"] is None else Stage(values["stage"])
        return cls(**values)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["status"] = str(self.status)
        record["stage"] = None if self.stage is None else str(self.stage)
        record["duration_s"] = round(self.duration_s, 3)
        return record
