"""Runs one contender as a child subreaper and reports its wall time, CPU time and peak memory.

`python bench/meter.py RESULT_JSON LOG -- COMMAND...`: the command's output goes to LOG; the
figures go to RESULT_JSON. As a subreaper this process adopts whatever the contender orphans
(ssh ControlPersist masters, daemonized helpers), so their memory counts, and it stops them
when the contender's command has exited: they were started by this run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_SAMPLE_SECONDS = 0.05
_GRACE_SECONDS = 5.0


def descendants(root: int) -> list[int]:
    """Every process below root, from each thread's children list (needs /proc children)."""
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            threads = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue  # exited meanwhile
        for thread in threads:
            try:
                children = (thread / "children").read_text().split()
            except OSError:
                continue
            found.extend(int(child) for child in children)
            pending.extend(int(child) for child in children)
    return found


def resident_kib_and_threads(pid: int) -> tuple[int, int]:
    """The process's resident set in KiB and its thread count (0, 0 once it exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    resident = fields.get("VmRSS", "0 kB").split()[0]  # a zombie has no VmRSS
    return int(resident), int(fields.get("Threads", "0").strip() or 0)


class _TreeSampler(threading.Thread):
    """Sums the resident sets and the threads of every process below this one, keeping the
    highest sums."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self.peak_threads = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stopped.is_set():
            figures = [resident_kib_and_threads(pid) for pid in descendants(me)]
            self.peak_kib = max(self.peak_kib, sum(kib for kib, _ in figures))
            self.peak_threads = max(self.peak_threads, sum(threads for _, threads in figures))
            self.stopped.wait(_SAMPLE_SECONDS)


def _stop_leftovers() -> None:
    """SIGTERM what the contender left running below us, SIGKILL it after a grace, reap all."""
    for pid in descendants(os.getpid()):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # nothing left to reap
        if pid == 0:
            if time.monotonic() > deadline:
                for straggler in descendants(os.getpid()):
                    _signal(straggler, signal.SIGKILL)
            time.sleep(0.02)


def _signal(pid: int, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, signal_number)


def main(argv: Sequence[str]) -> int:
    result_path, log_path, separator, *command = argv
    if separator != "--" or not command:
        print("usage: python bench/meter.py RESULT_JSON LOG -- COMMAND...", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    sampler = _TreeSampler()
    with Path(log_path).open("ab") as log:
        started = time.monotonic()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        sampler.start()
        exit_code = child.wait()
        wall_seconds = time.monotonic() - started
    sampler.stopped.set()
    sampler.join()
    _stop_leftovers()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # everything reaped below us
    figures = {
        "wall_s": wall_seconds,
        "exit_code": exit_code,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_tree_rss_kib": sampler.peak_kib,
        "peak_threads": sampler.peak_threads,
        # The largest single process: exact, where the sampled sum may miss a short peak.
        "max_process_rss_kib": usage.ru_maxrss,
    }
    Path(result_path).write_text(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
