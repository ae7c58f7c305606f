"""Where a kenornir run spends its time: a py-spy profile of one run and its top frames."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import TOOLS_VENV


@dataclass(frozen=True)
class Frame:
    """A function and its share of the samples: on top of the stack (self) and anywhere in it."""

    function: str
    self_share: float
    total_share: float


def py_spy_record(command: Sequence[str], folded: Path, idle: bool) -> list[str]:
    """argv that runs command under py-spy and writes its stacks, folded, to `folded`.

    idle keeps samples of threads that wait (on the network, on a lock): where a run spends
    its wall time rather than its CPU time.
    """
    return [
        *(str(TOOLS_VENV / "bin" / "py-spy"), "record", "--rate", "100", "--nolineno"),
        *("--format", "raw", "--output", str(folded)),
        *(["--idle"] if idle else []),
        "--",
        *command,
    ]


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
