"""`python -m bench`: bring up a lab, run every contender in alternating rounds, print the table."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from bench.contenders import (
    ANSIBLE,
    CONTENDERS,
    KENORNIR,
    KENORNIR_BROKER,
    KENORNIR_SFTP,
    TOOLS_VENV,
)
from bench.hotspots import cpu_by_command, profile_kenornir
from bench.job import write_job
from bench.report import (
    broker_overhead_line,
    link_check_lines,
    machine_line,
    per_node_line,
    render_table,
    summarize,
    targets,
)
from bench.runner import BenchError, Runner
from bench.wire import WireCounters, WireError
from tests.distributed import Worker, redis_server
from tests.lab import Lab, LabError, ensure_packages, leased_subnet
from tests.lab.link_check import LinkCheckError, LinkFigures, measure_link
from tests.lab.relay import EdgeLink

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SCENARIOS = ("loopback", "edge-link")

log = logging.getLogger("bench")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    try:
        return _bench(args)
    except (
        BenchError,
        LabError,
        LinkCheckError,
        WireError,
        OSError,
        subprocess.CalledProcessError,
    ) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1


def _bench(args: argparse.Namespace) -> int:
    contenders = [name for name in args.contenders.split(",") if name]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown or not contenders:
        raise BenchError(
            f"--contenders takes some of {','.join(CONTENDERS)}, not {args.contenders}"
        )
    if ANSIBLE in contenders or args.profile:
        _ensure_tools()
    work_dir = args.work_dir.absolute()
    if args.kenornir_rev:
        _use_kenornir_revision(args.kenornir_rev, work_dir)
    header = (
        f"{args.scenario}: {args.nodes} nodes (amd64/arm64/arm), {args.workers} workers,"
        f" keadm {args.package_size_mb} MiB, {args.rounds} round(s)"
    )
    if args.scenario == "edge-link":
        header += f", each node behind {args.link_rate_mbit:g} Mbit/s and {args.link_rtt_ms:g} ms"
    machine = machine_line()
    log.info("%s; %s", header, machine)
    packages = ensure_packages(work_dir / "packages", binary_size=args.package_size_mb * 2**20)
    edge_link = (
        EdgeLink(args.link_rate_mbit, args.link_rtt_ms) if args.scenario == "edge-link" else None
    )
    link_check: LinkFigures | None = None
    if edge_link is not None:
        # The link the runs are about to get, measured rather than assumed: the relay shapes
        # in userspace, and a loaded machine could make it slower than it is set to be.
        link_check = measure_link(work_dir / "link-check", edge_link)
        log.info("%s", link_check_lines(link_check))
    with _running_lab(work_dir / "lab", args.nodes, edge_link) as lab:
        job = write_job(work_dir / "job", lab.client_nodes, lab.key_path, packages, args.workers)
        with (
            WireCounters(f"kenornir_bench_{os.getpid()}", job.nodes) as wire,
            contextlib.ExitStack() as broker,
        ):
            runner = Runner(lab, job, wire, work_dir / "runs")
            if {KENORNIR, KENORNIR_SFTP, KENORNIR_BROKER} & set(contenders):
                runner.prepare_kenornir()
            if KENORNIR_BROKER in contenders:
                worker = broker.enter_context(
                    _broker_worker(work_dir, runner.cache_dir, args.workers)
                )
                runner.job = job = replace(job, broker=worker.broker)
                runner.broker_worker_pid = worker.process.pid
            measurements = runner.rounds(contenders, args.rounds, args.second_run)
            profile = profile_kenornir(runner, args.scenario, work_dir) if args.profile else None
            cpu = cpu_by_command(runner, contenders, work_dir) if args.cpu_profile else None
    help_seconds = _help_seconds(args.help_runs, work_dir) if KENORNIR in contenders else None
    summaries = summarize(measurements)
    found = targets(summaries, args.scenario, job.binary_size, help_seconds, args.nodes)
    print(header)
    print(machine)
    if link_check is not None:
        print(link_check_lines(link_check))
    print(render_table(summaries))
    for line in (per_node_line(summaries, args.nodes), broker_overhead_line(summaries, args.nodes)):
        if line is not None:
            print(line)
    if help_seconds is not None:
        print(f"kenornir --help: median {help_seconds:.3f} s of {args.help_runs} runs")
    print("targets:")
    print("\n".join(target.line() for target in found))
    if profile is not None:
        print(profile)
    if cpu is not None:
        print(cpu)
    results = work_dir / f"results-{args.scenario}-n{args.nodes}-w{args.workers}.json"
    results.write_text(
        json.dumps(
            {
                "header": header,
                "machine": machine,
                "link_check": asdict(link_check) if link_check is not None else None,
                "measurements": [asdict(m) for m in measurements],
                "help_seconds": help_seconds,
                "targets": [{**asdict(t), "met": t.met} for t in found],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"figures of every run: {results}")
    return 0


@contextlib.contextmanager
def _broker_worker(work_dir: Path, cache_dir: Path, concurrency: int) -> Iterator[Worker]:
    """Debian's redis-server and one `kenornir worker` taking the nodes (its package cache is
    the one prepared for kenornir)."""
    with redis_server(work_dir / "redis") as redis:
        worker = Worker(
            work_dir / "worker", redis.url(), "bench", concurrency=concurrency, cache_dir=cache_dir
        )
        try:
            yield worker
        finally:
            worker.stop()


@contextlib.contextmanager
def _running_lab(state_dir: Path, nodes: int, edge_link: EdgeLink | None) -> Iterator[Lab]:
    """A lab of its own on a leased subnet, stopped again whatever happens."""
    with leased_subnet() as subnet:
        lab = Lab(state_dir, subnet)
        try:
            lab.up(nodes, arch_mix=True, edge_link=edge_link)
            yield lab
        finally:
            lab.down()


def _use_kenornir_revision(revision: str, work_dir: Path) -> None:
    """Run kenornir as committed at revision: the work tree may hold someone's unfinished edit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = work_dir / f"kenornir-{commit[:12]}"
    if not source.is_dir():
        source.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit, "kenornir"], cwd=REPO, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    # Every child imports kenornir from there first (PYTHONPATH precedes the editable install).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(source), os.environ.get("PYTHONPATH")])
    )
    log.info("kenornir from %s (%s)", commit[:12], source)


def _help_seconds(runs: int, cwd: Path) -> float:
    """Median wall time of `python -m kenornir --help` (after one untimed run), run in cwd."""
    command = [sys.executable, "-m", "kenornir", "--help"]
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def _ensure_tools() -> None:
    """The bench's own venv with Ansible and py-spy, apart from the project's venv."""
    if (TOOLS_VENV / "bin" / "ansible-playbook").exists() and (
        TOOLS_VENV / "bin" / "py-spy"
    ).exists():
        return
    log.info("installing ansible-core and py-spy into %s", TOOLS_VENV)
    subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
    pip = [str(TOOLS_VENV / "bin" / "pip"), "install", "-q"]
    subprocess.run([*pip, "-r", str(BENCH_DIR / "requirements.txt")], check=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--nodes", type=int, default=30, help="lab nodes (default %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=10, help="nodes at once (default %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="(default %(default)s)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="loopback")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated, some of %(default)s",
    )
    parser.add_argument(
        "--no-second-run",
        dest="second_run",
        action="store_false",
        help="skip kenornir's second run (nothing changed) after each first run",
    )
    parser.add_argument("--profile", action="store_true", help="one more kenornir run under py-spy")
    parser.add_argument(
        "--cpu-profile",
        action="store_true",
        help="one more run of each contender under perf: the machine's CPU per command",
    )
    parser.add_argument("--help-runs", type=int, default=10, help="kenornir --help timings")
    parser.add_argument("--package-size-mb", type=int, default=80, help="keadm binary size")
    parser.add_argument("--link-rate-mbit", type=float, default=20.0, help="edge-link rate")
    parser.add_argument("--link-rtt-ms", type=float, default=40.0, help="edge-link round trip")
    parser.add_argument(
        "--kenornir-rev",
        metavar="REV",
        help="bench kenornir as committed at REV (e.g. HEAD), not the work tree",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=BENCH_DIR / ".work", help="(default bench/.work)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
