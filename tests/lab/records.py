"""Reading what the fake keadm recorded on a node (keadm-join.log, see fake_keadm.sh)."""

from __future__ import annotations

from dataclasses import dataclass

JOIN_LOG = "/var/lib/kubeedge/keadm-join.log"
# What the fake keadm's join writes and its reset removes, as real keadm's do: a joined node.
EDGECORE_CONFIG = "/etc/kubeedge/config/edgecore.yaml"


@dataclass(frozen=True)
class JoinRecord:
    """One fake keadm join invocation: when it ran, how it ended, where and with what argv."""

    start: float
    end: float
    outcome: str  # ok, pre-run-failed, invalid-token or killed
    cwd: str
    argv: tuple[str, ...]  # after the program name, "join" first


def parse_join_records(text: str) -> list[JoinRecord]:
    """Parse keadm-join.log: tab-separated START, END, OUTCOME, CWD, ARGV..., one line each."""
    records = []
    for line in text.splitlines():
        start, end, outcome, cwd, *argv = line.split("\t")
        records.append(JoinRecord(float(start), float(end), outcome, cwd, tuple(argv)))
    return records
