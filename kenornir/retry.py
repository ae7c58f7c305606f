"""Retries of a node's transient faults: which faults, how often, how long apart."""

from __future__ import annotations

import random
from dataclasses import dataclass

from kenornir.outcome import Stage, Status

DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY_S = 2.0
# Stages that only read the node or write kenornir's own staging files: doing them again is
# harmless. keadm and the hooks change the node and are never retried automatically.
RETRIED_STAGES = frozenset({Stage.CONNECT, Stage.ARCH, Stage.STAGE_DIR, Stage.UPLOAD})


@dataclass(frozen=True)
class RetryPolicy:
    """How often a node is tried again after a transient fault, and how long apart."""

    retries: int = DEFAULT_RETRIES
    delay_s: float = DEFAULT_RETRY_DELAY_S

    def __post_init__(self) -> None:
        if self.retries < 0 or self.delay_s < 0:
            raise ValueError(f"retries and retry delay must be >= 0, not {self}")

    def pause_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...): exponential
        backoff with equal jitter, half of delay x 2^(attempt-1) for sure and the rest at random,
        so the nodes one network blip cut off do not all come back in the same instant."""
        ceiling = self.delay_s * 2.0 ** (attempt - 1)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def is_transient(status: Status, stage: Stage, connection_lost: bool) -> bool:
    """Whether a failure is worth another attempt: the node did not answer, or its connection
    was lost, at a stage that is safe to do again."""
    if stage not in RETRIED_STAGES:
        return False
    return status is Status.UNREACHABLE or (status is Status.FAILED and connection_lost)
