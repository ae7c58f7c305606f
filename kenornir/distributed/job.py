"""What travels through the broker, both ways, as JSON.

To a worker: a NodeJob. While the node runs, the worker's progress (its name, the stages so far,
a heartbeat count and the node log); at the end the node's outcome record and its log. Nothing
here holds a secret read from the environment: the config text keeps `${NAME}`, and the log and
the outcome were masked by the worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kenornir.outcome import NodeOutcome

PROGRESS = "PROGRESS"  # the Celery task state a running node's worker reports


@dataclass(frozen=True)
class NodeJob:
    """One node for a worker: its part of the config and the controller's run options."""

    node: str
    config_text: str  # kenornir.config.portable.node_texts
    source: str  # the config file on the controller, named in the worker's errors
    # arch -> sha256 of the keadm binary the controller verified: the worker's must match.
    packages: dict[str, str]
    ssh: dict[str, Any]  # nornir_settings' ssh options (paths are read on the worker)
    transfer: str | None
    retries: int
    retry_delay: float
    rejoin: bool
    verify_checksum: bool | None
    beat_s: float  # how often the worker says it is still at work on the node

    def to_message(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> NodeJob:
        return cls(**message)


@dataclass
class Progress:
    """A running node as its worker reports it (the task's PROGRESS meta)."""

    worker: str
    beat: int = 0
    stages: list[str] = field(default_factory=list)
    log: str = ""

    def to_message(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Progress:
        return cls(**message)


@dataclass(frozen=True)
class NodeDone:
    """The task's result: the node's outcome (naming the worker) and its whole log."""

    outcome: NodeOutcome
    log: str

    def to_message(self) -> dict[str, Any]:
        return {"outcome": self.outcome.to_record(), "log": self.log}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> NodeDone:
        return cls(NodeOutcome.from_record(message["outcome"]), message["log"])
