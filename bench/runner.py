"""Runs the contenders in alternating rounds on the lab, resetting the nodes between runs."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import (
    COMMANDS,
    KENORNIR,
    KENORNIR_BROKER,
    KENORNIR_SECOND_RUN,
    Command,
    RunPaths,
    kenornir_prepare,
)
from bench.job import COPY_FROM_FILES, STAGING, TOKEN, Job, join_arguments
from bench.wire import WireCounters
from kenornir.joined import EDGECORE_CONFIG
from tests.lab import JOIN_LOG, Lab, parse_join_records

METER = Path(__file__).with_name("meter.py")
# Unjoined too (edgecore.yaml gone): kenornir skips a node joined already.
RESET_COMMAND = f"rm -rf /tmp/kubeedge /var/lib/kubeedge/* {EDGECORE_CONFIG}"

log = logging.getLogger(__name__)


def slug(contender: str) -> str:
    """The contender's name as a file name part: `kenornir (2nd run)` -> `kenornir-2nd-run`."""
    return contender.replace(" ", "-").replace("(", "").replace(")", "")


class BenchError(RuntimeError):
    """A contender failed or left a node without the job done: its figures would mean nothing."""


@dataclass(frozen=True)
class Measurement:
    """One run of one contender."""

    contender: str
    round: int
    wall_s: float
    cpu_s: float  # user + system of the whole process tree on the controller
    peak_rss_kib: int  # the whole process tree's, see bench/meter.py
    sent_bytes: Sequence[int]  # on the wire to each node, in node order
    peak_threads: int  # of the whole process tree

    @property
    def sent_per_node(self) -> float:
        return sum(self.sent_bytes) / len(self.sent_bytes)


class Runner:
    """Measures contenders on one lab and job; every run leaves its output under runs_dir."""

    def __init__(self, lab: Lab, job: Job, wire: WireCounters, runs_dir: Path) -> None:
        self.lab = lab
        self.job = job
        self.wire = wire
        self.runs_dir = runs_dir
        self.cache_dir = runs_dir.parent / "kenornir-cache"
        # The kenornir worker of the kenornir-broker contender: its CPU is that run's too.
        self.broker_worker_pid: int | None = None

    def rounds(self, contenders: Sequence[str], rounds: int, second_run: bool) -> list[Measurement]:
        """Every contender once per round, first runs on reset nodes; the order rotates each
        round so no contender always runs first or last. With second_run, kenornir runs again
        straight after its first run, nothing changed on the nodes."""
        measurements = []
        for round_number in range(1, rounds + 1):
            shift = (round_number - 1) % len(contenders)
            for contender in [*contenders[shift:], *contenders[:shift]]:
                self.reset_nodes()
                paths = self.paths(contender, f"round{round_number}")
                paths.known_hosts.unlink(missing_ok=True)
                measurements.append(self.measure(contender, round_number, paths))
                if contender == KENORNIR and second_run:
                    again = self.paths(KENORNIR_SECOND_RUN, f"round{round_number}")
                    # The nodes are joined now: the second run skips each after its probe, so
                    # every node still holds the one join of the first run.
                    measurements.append(self.measure(KENORNIR_SECOND_RUN, round_number, again))
        return measurements

    def prepare_kenornir(self) -> None:
        """kenornir's package cache, filled before timing: the others get unpacked binaries."""
        command = kenornir_prepare(self.job, self.cache_dir)
        prepared = subprocess.run(command.argv, capture_output=True, text=True, check=False)
        if prepared.returncode != 0:
            raise BenchError(f"kenornir prepare exited {prepared.returncode}: {prepared.stderr}")

    def reset_nodes(self) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda n: self.lab.exec(n.name, RESET_COMMAND), self.job.nodes))
        failed = [result.stderr.strip() for result in results if result.returncode != 0]
        if failed:
            raise BenchError(f"resetting {len(failed)} node(s) failed: {failed[0]}")

    def measure(
        self,
        contender: str,
        round_number: int,
        paths: RunPaths,
        under: Sequence[str] = (),
    ) -> Measurement:
        """Run the contender once under bench/meter.py and check that it did the whole job.

        `under` prefixes the meter's command line (a profiler such as `perf record -a --`).
        """
        shutil.rmtree(paths.run_dir, ignore_errors=True)  # a previous invocation's run
        paths.run_dir.mkdir(parents=True)
        command = COMMANDS[contender](self.job, paths)
        output = paths.run_dir / "output.log"
        log.info("round %d: %s", round_number, contender)
        before = self.wire.read()
        worker_cpu = self._broker_worker_cpu_s()
        self._metered(command, paths.run_dir, under)
        worker_cpu = self._broker_worker_cpu_s() - worker_cpu
        after = self.wire.read()
        figures = json.loads((paths.run_dir / "meter.json").read_text())
        if figures["exit_code"] != 0:
            raise BenchError(f"{contender} exited {figures['exit_code']}; its output: {output}")
        self.verify(contender, output)
        return Measurement(
            contender,
            round_number,
            figures["wall_s"],
            figures["cpu_s"] + (worker_cpu if contender == KENORNIR_BROKER else 0.0),
            max(figures["peak_tree_rss_kib"], figures["max_process_rss_kib"]),
            [after[node.name] - before[node.name] for node in self.job.nodes],
            figures["peak_threads"],
        )

    def _broker_worker_cpu_s(self) -> float:
        """User + system CPU seconds of the broker's worker so far (0 when there is none)."""
        if self.broker_worker_pid is None:
            return 0.0
        fields = Path(f"/proc/{self.broker_worker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def verify(self, contender: str, output: Path) -> None:
        """Every node has the binary, the copyFrom files (mode 0755) and one ok join."""
        names = " ".join(["keadm", *COPY_FROM_FILES])
        check = f"cd {STAGING} && stat -c '%s %a' {names} && cat {JOIN_LOG}"
        expected_stats = [
            f"{size} 755"
            for size in (self.job.binary_size, *(len(text) for text in COPY_FROM_FILES.values()))
        ]

        def problem(node_name: str) -> str | None:
            listing = self.lab.exec(node_name, check)
            if listing.returncode != 0:
                return f"{node_name}: {listing.stderr.strip() or 'nothing staged'}"
            lines = listing.stdout.splitlines()
            stats, records = lines[: len(expected_stats)], lines[len(expected_stats) :]
            if stats != expected_stats:
                return f"{node_name}: staged files (size, mode) are {stats}, not {expected_stats}"
            wanted = tuple(join_arguments(node_name, TOKEN).split())
            joined = [r for r in parse_join_records("\n".join(records)) if r.argv == wanted]
            if len(joined) != 1 or any(r.outcome != "ok" for r in joined):
                return f"{node_name}: join records {joined}"
            return None

        with ThreadPoolExecutor(max_workers=16) as pool:
            problems = [p for p in pool.map(problem, [n.name for n in self.job.nodes]) if p]
        if problems:
            raise BenchError(
                f"{contender} left {len(problems)} node(s) without the job done"
                f" ({problems[0]}); its output: {output}"
            )

    def paths(self, contender: str, label: str) -> RunPaths:
        """Where a run labelled e.g. `round2` or `cpu` keeps its state, under runs_dir."""
        return RunPaths(
            run_dir=self.runs_dir / f"{label}-{slug(contender)}",
            known_hosts=self.runs_dir / f"{label}-known_hosts",
            cache_dir=self.cache_dir,
        )

    @staticmethod
    def _metered(command: Command, run_dir: Path, under: Sequence[str] = ()) -> None:
        """Run the command in run_dir under bench/meter.py: meter.json and output.log there.

        Not from the repo: `python -m kenornir` there would import the work tree's kenornir
        whatever PYTHONPATH says.
        """
        meter = [sys.executable, str(METER), "meter.json", "output.log", "--"]
        log.debug("running %s", shlex.join(command.argv))
        subprocess.run(
            [*under, *meter, *command.argv],
            env={**os.environ, **command.env},
            cwd=run_dir,
            check=True,
        )
