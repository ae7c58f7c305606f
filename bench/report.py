"""The bench's table: medians per contender, ratios against kenornir, and the issue's targets."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import (
    ANSIBLE,
    KENORNIR,
    KENORNIR_BROKER,
    KENORNIR_COLD,
    KENORNIR_SECOND_RUN,
    OPENSSH,
)
from bench.runner import Measurement
from tests.lab.link_check import LinkFigures

MIB = 2**20
# How far a measured link figure may be off its setting before the report points at it.
LINK_TOLERANCE = 0.15


@dataclass(frozen=True)
class Summary:
    """One contender over all rounds."""

    contender: str
    walls: Sequence[float]
    cpu_s: float  # the median of its runs
    peak_rss_kib: int  # the highest of its runs
    peak_threads: int  # the highest of its runs
    sent_per_node: float  # the median of its runs

    @property
    def median_wall(self) -> float:
        return statistics.median(self.walls)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets for kenornir: met when value <= limit."""

    what: str
    value: float
    limit: float
    unit: str

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def line(self) -> str:
        verdict = "met   " if self.met else "MISSED"
        figure, limit = f"{self.value:.2f}{self.unit}", f"{self.limit:g}{self.unit}"
        return f"  [{verdict}] {self.what}: {figure} (target <= {limit})"


def summarize(measurements: Sequence[Measurement]) -> dict[str, Summary]:
    """Summaries by contender, in the order contenders first appear."""
    by_contender: dict[str, list[Measurement]] = {}
    for measurement in measurements:
        by_contender.setdefault(measurement.contender, []).append(measurement)
    return {
        name: Summary(
            name,
            [run.wall_s for run in runs],
            statistics.median(run.cpu_s for run in runs),
            max(run.peak_rss_kib for run in runs),
            max(run.peak_threads for run in runs),
            statistics.median(run.sent_per_node for run in runs),
        )
        for name, runs in by_contender.items()
    }


def targets(
    summaries: Mapping[str, Summary],
    scenario: str,
    binary_size: int,
    help_seconds: float | None,
    nodes: int,
) -> list[Target]:
    """The targets these figures can be checked against (issue 16 sets them for loopback N=10
    W=5 and N=30 W=10, edge-link N=30 W=30; the header says what ran)."""
    found = []
    warm, cold = summaries.get(KENORNIR), summaries.get(KENORNIR_COLD)
    openssh = summaries.get(OPENSSH)
    if warm is not None:
        if openssh is not None:
            limit = 0.5 if scenario == "loopback" else 0.27
            ratio = warm.median_wall / openssh.median_wall
            found.append(Target(f"warm cache, kenornir / {OPENSSH}", ratio, limit, "x"))
        if ANSIBLE in summaries:
            ratio = warm.median_wall / summaries[ANSIBLE].median_wall
            found.append(Target(f"warm cache, kenornir / {ANSIBLE}", ratio, 0.3, "x"))
        if KENORNIR_SECOND_RUN in summaries:
            ratio = summaries[KENORNIR_SECOND_RUN].median_wall / warm.median_wall
            found.append(Target("second run, nothing changed / first run", ratio, 0.25, "x"))
        found.append(
            Target("bytes sent per node / keadm size", warm.sent_per_node / binary_size, 0.4, "x")
        )
        peak, limit = warm.peak_rss_kib / 1024, 400 if nodes >= 1000 else 150
        found.append(Target("controller peak RSS, warm", peak, limit, " MiB"))
    if cold is not None:
        if openssh is not None:
            limit = 0.75 if nodes <= 10 else 0.6
            ratio = cold.median_wall / openssh.median_wall
            found.append(Target(f"first run, empty cache, kenornir / {OPENSSH}", ratio, limit, "x"))
        found.append(
            Target("controller peak RSS, first run", cold.peak_rss_kib / 1024, 100, " MiB")
        )
    if help_seconds is not None:
        found.append(Target("kenornir --help", help_seconds, 0.3, " s"))
    return found


def per_node_line(summaries: Mapping[str, Summary], nodes: int) -> str | None:
    """kenornir's controller CPU per node and its thread count at peak (the 1,000-node run)."""
    warm = summaries.get(KENORNIR)
    if warm is None:
        return None
    return (
        f"kenornir: {warm.cpu_s / nodes * 1000:.1f} ms of controller CPU per node, "
        f"{warm.peak_threads} threads at peak"
    )


def broker_overhead_line(summaries: Mapping[str, Summary], nodes: int) -> str | None:
    """What a --broker run adds to the local one, per node (the broker's round trips)."""
    local, broker = summaries.get(KENORNIR), summaries.get(KENORNIR_BROKER)
    if local is None or broker is None:
        return None
    extra = broker.median_wall - local.median_wall
    return (
        f"kenornir-broker / kenornir: {_ratio(broker.median_wall, local.median_wall).strip()}x, "
        f"{extra / nodes * 1000:+.1f} ms per node ({extra:+.2f} s over {nodes} nodes)"
    )


def render_table(summaries: Mapping[str, Summary]) -> str:
    """One line per contender; the ratio columns are kenornir's figure divided by this one's."""
    base = summaries.get(KENORNIR)
    header = (
        f"{'contender':20} {'median s':>9}  {'runs (s)':20} {'CPU s':>6} {'peak RSS MiB':>12}"
        f" {'sent/node MiB':>13}   kenornir/this: {'time':>5} {'CPU':>5} {'RSS':>5} {'sent':>5}"
    )
    lines = [header]
    for summary in summaries.values():
        runs = " ".join(f"{wall:.1f}" for wall in summary.walls)
        line = (
            f"{summary.contender:20} {summary.median_wall:9.2f}  {runs:20} {summary.cpu_s:6.1f}"
            f" {summary.peak_rss_kib / 1024:12.1f} {summary.sent_per_node / MIB:13.2f}"
        )
        if base is not None and summary.contender != KENORNIR_SECOND_RUN:
            line += (
                f"   {'':14} {base.median_wall / summary.median_wall:5.2f}"
                f" {base.cpu_s / summary.cpu_s:5.2f}"
                f" {base.peak_rss_kib / summary.peak_rss_kib:5.2f}"
                f" {_ratio(base.sent_per_node, summary.sent_per_node)}"
            )
        lines.append(line)
    return "\n".join(lines)


def link_check_lines(figures: LinkFigures) -> str:
    """The edge link as measured before the runs, each figure beside what the link was set to."""
    link = figures.link
    median_ms = statistics.median(figures.round_trips_ms)
    rate = f"{_versus(figures.rate_mbit, link.rate_mbit, 'Mbit/s', 'unlimited')}"
    shared = f"{_versus(figures.shared_rate_mbit, link.rate_mbit, 'Mbit/s', 'unlimited')}"
    return "\n".join(
        [
            "edge link, measured before the runs through a relay with the same settings in"
            " front of a local sink (tests/lab/link_check.py):",
            f"  one {figures.bulk_bytes / MIB:.1f} MiB transfer: {rate}",
            f"  two connections to one node at once, together: {shared}",
            f"  round trip on an open connection: median"
            f" {_versus(median_ms, link.rtt_ms, 'ms', 'no delay')},"
            f" min {min(figures.round_trips_ms):.2f} ms of {len(figures.round_trips_ms)}",
            "  a new connection's first ping-pong (handshake and one round trip):"
            f" {_versus(figures.first_ping_ms, 2 * link.rtt_ms, 'ms', 'no delay')}",
        ]
    )


def _versus(measured: float, setting: float, unit: str, unset: str) -> str:
    """`19.98 Mbit/s (set 20 Mbit/s)`, pointing at a figure off its setting by more than
    LINK_TOLERANCE; a setting of 0 means no limit (unset)."""
    if setting <= 0:
        return f"{measured:.2f} {unit} (set: {unset})"
    off = measured / setting - 1
    marker = f" OFF BY {off:+.0%}" if abs(off) > LINK_TOLERANCE else ""
    return f"{measured:.2f} {unit} (set {setting:g} {unit}){marker}"


def machine_line() -> str:
    """nproc, CPU model, memory and load: what the figures were measured on."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), {memory_kib / 2**20:.1f} GiB memory,"
        f" load average {load}"
    )


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:5.2f}" if denominator else f"{'-':>5}"
