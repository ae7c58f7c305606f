"""Where a run spends its time: py-spy profiles of kenornir's first and second runs, and the
whole machine's CPU per command (perf) for any contender."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import TOOLS_VENV, RunPaths, kenornir
from bench.runner import BenchError, Runner, slug

PERF_HZ = 499  # samples per second per CPU: each sample stands for 1/PERF_HZ CPU seconds


@dataclass(frozen=True)
class Frame:
    """A function and its share of the samples: on top of the stack (self) and anywhere in it."""

    function: str
    self_share: float
    total_share: float


def profile_kenornir(runner: Runner, scenario: str, work_dir: Path) -> str:
    """One more kenornir first run and its second run, each under py-spy; their top frames.

    On loopback the run is CPU-bound: py-spy samples only the thread holding the GIL, i.e.
    where the Python CPU time goes. Behind edge links the run waits: py-spy samples every
    thread, idle ones included, i.e. where the wall time goes.
    """
    lens = "--gil" if scenario == "loopback" else "--idle"
    described = {"--gil": "Python CPU time (GIL holder)", "--idle": "wall time (all threads)"}
    runner.reset_nodes()
    known_hosts = work_dir / "runs" / "profile-known_hosts"
    known_hosts.unlink(missing_ok=True)
    sections = []
    for run in ("first", "second"):
        paths = RunPaths(work_dir / "runs" / f"profile-{run}", known_hosts, runner.cache_dir)
        shutil.rmtree(paths.run_dir, ignore_errors=True)
        paths.run_dir.mkdir(parents=True)
        folded = work_dir / f"profile-{scenario}-{run}.folded"
        record = [
            *(str(TOOLS_VENV / "bin" / "py-spy"), "record", "--rate", "100", "--nolineno"),
            *("--format", "raw", "--output", str(folded), lens, "--"),
            *kenornir(runner.job, paths).argv,
        ]
        subprocess.run(record, check=True, capture_output=True, cwd=paths.run_dir)
        ours = top_frames(folded, within=("kenornir/", "paramiko/"))
        sections.append(
            f"kenornir {run} run profile, {described[lens]}, folded stacks in {folded}\n"
            f"top frames:\n{render_frames(top_frames(folded))}\n"
            f"kenornir and paramiko functions by total share:\n{render_frames(ours)}"
        )
    return "\n".join(sections)


def top_frames(folded: Path, count: int = 15, within: Sequence[str] = ()) -> list[Frame]:
    """The functions most often on top of the sampled stacks, with their inclusive share.

    With `within` (file path fragments such as "kenornir/"), the functions of those files with
    the largest inclusive share instead: which of their calls the time goes to.
    """
    on_top: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        samples += int(weight)
        on_top[frames[-1]] += int(weight)
        for frame in set(frames):
            anywhere[frame] += int(weight)
    if within:
        ranked = [f for f, _ in anywhere.most_common() if any(part in f for part in within)]
    else:
        ranked = [f for f, _ in on_top.most_common()]
    return [
        Frame(function, on_top[function] / samples, anywhere[function] / samples)
        for function in ranked[:count]
    ]


def render_frames(frames: Sequence[Frame]) -> str:
    lines = [f"{'self':>6} {'total':>6}  function (file)"]
    lines += [
        f"{frame.self_share:6.1%} {frame.total_share:6.1%}  {frame.function}" for frame in frames
    ]
    return "\n".join(lines)


def cpu_by_command(runner: Runner, contenders: Sequence[str], work_dir: Path) -> str:
    """One more first run of each contender on reset nodes under `perf record -a`, and the CPU
    seconds each command name took on the whole machine.

    In the lab the nodes share the controller's CPUs, so their sshd, shells and unpacking are
    part of what a run costs; py-spy sees only the controller's Python. perf sees every process
    (`swapper` is the idle CPU).
    """
    perf = shutil.which("perf")
    if perf is None:
        raise BenchError("--cpu-profile needs perf (Debian: apt-get install linux-perf)")
    sections = []
    for contender in contenders:
        runner.reset_nodes()
        paths = runner.paths(contender, "cpu")  # measure() empties its run dir
        paths.known_hosts.unlink(missing_ok=True)
        data = work_dir / f"cpu-{slug(contender)}.perf"
        record = [perf, "record", "-a", "-q", "-F", str(PERF_HZ), "-o", str(data), "--"]
        measured = runner.measure(contender, 0, paths, under=record)
        names = subprocess.run(
            [perf, "script", "-i", str(data), "-F", "comm"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        seconds = Counter(name.strip() for name in names if name.strip())
        busy = sum(count for name, count in seconds.items() if name != "swapper") / PERF_HZ
        lines = [
            f"{contender}: {measured.wall_s:.2f} s wall, {busy:.1f} CPU s busy on the whole "
            f"machine (perf data in {data})",
            f"{'CPU s':>7} {'share':>6}  command",
        ]
        total = sum(seconds.values())
        lines += [
            f"{count / PERF_HZ:7.2f} {count / total:6.1%}  {name}"
            for name, count in seconds.most_common(12)
        ]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
