"""Fault-suite fixtures: a small lab per test, configs over it, CLI runs checked for secrets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.batch_configs import LAB_TOKEN, node_entry, offline_dir_of, write_config
from tests.lab import DEFAULT_TMP_SIZE_MB, Lab, LabFactory

STAGING = "/tmp/kubeedge/keadm"
JOIN_CMD = "{{.cmd}} --edgenode-name={{nodeName}} --token={{.token}}"
# Every fault test runs its faulty node beside these two, which must still end ok.
HEALTHY_NODES = ("node-002", "node-003")
# Runs argv[2:] and writes the peak resident memory of that child, in bytes, to argv[1].
_PEAK_RSS_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(code)
"""


@dataclass(frozen=True)
class FaultRun:
    """One finished `python -m kenornir` run: its exit code, what it printed, its run dir."""

    exit_code: int
    stdout: str
    stderr: str
    run_dir: Path
    peak_rss_bytes: int | None = None  # of the kenornir process, when the run measured it

    @property
    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.run_dir / "report.json").read_text())
        return report

    def record(self, node: str) -> dict[str, Any]:
        return next(r for r in self.report["nodes"] if r["node"] == node)

    def statuses(self) -> dict[str, str]:
        return {r["node"]: r["status"] for r in self.report["nodes"]}

    def events(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "events.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def node_log(self, node: str) -> str:
        return (self.run_dir / f"{node}.log").read_text(errors="replace")

    @property
    def run_log(self) -> str:
        return (self.run_dir / "run.log").read_text(errors="replace")

    def outputs(self) -> dict[str, str]:
        """Everything the run left for a person to read: its terminal output and every file."""
        texts = {"stdout": self.stdout, "stderr": self.stderr}
        for path in sorted(self.run_dir.rglob("*")):
            if path.is_file():
                texts[str(path.relative_to(self.run_dir))] = path.read_text(errors="replace")
        return texts


def leaked_secrets(secrets: Iterable[str], outputs: Mapping[str, str]) -> list[str]:
    """Each secret found in outputs, as written or escaped the way JSON or repr() writes it
    (a secret with `"`, `\\` or non-ASCII), as `secret #N in WHERE: ...context...` (value
    replaced)."""
    leaks = []
    for number, secret in enumerate(secrets, start=1):
        for where, text in outputs.items():
            for spelling in secret_spellings(secret):
                at = text.find(spelling)
                if at >= 0:
                    context = text[max(0, at - 80) : at + len(spelling) + 80]
                    shown = context.replace(spelling, "<SECRET>")
                    leaks.append(f"secret #{number} in {where}: {shown}")
                    break
    return leaks


def secret_spellings(secret: str) -> list[str]:
    """A secret as is and as JSON (report.json, events.jsonl) or repr() would escape it."""
    spellings = [
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
    ]
    return list(dict.fromkeys(spellings))


@dataclass
class FaultLab:
    """A lab plus what a fault test needs to run kenornir's CLI against it.

    Every run's outputs are checked against `secrets` (the lab password, the join token and
    any passphrase a test adds) before the test sees the run.
    """

    lab: Lab
    workdir: Path
    offline_dir: Path
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.secrets += [self.lab.password, LAB_TOKEN]

    def entry(self, name: str, cmd: str = JOIN_CMD, **options: Any) -> dict[str, Any]:
        return node_entry(self.lab, name, cmd=cmd, **options)

    def healthy(self, names: Sequence[str] = HEALTHY_NODES) -> list[dict[str, Any]]:
        """Nodes that must end ok: the first logs in with the lab key, the rest by password."""
        auths = ["privateKey"] + ["password"] * (len(names) - 1)
        return [self.entry(name, auth=auth) for name, auth in zip(names, auths, strict=True)]

    def config(
        self, nodes: Sequence[Mapping[str, Any]], name: str = "batch", **options: Any
    ) -> Path:
        return write_config(self.workdir / f"{name}.yaml", nodes, self.offline_dir, **options)

    def command(self, config: Path, run_name: str, *args: str) -> list[str]:
        return [
            *(sys.executable, "-m", "kenornir", str(config)),
            *("--run-dir", str(self.workdir / "runs" / run_name)),
            *("--known-hosts", str(self.workdir / "known_hosts")),
            *("--cache-dir", str(self.workdir / "cache"), "--no-progress", *args),
        ]

    def run(
        self,
        config: Path,
        run_name: str,
        *args: str,
        timeout: float = 120,
        measure_memory: bool = False,
        unjoin: bool = True,
    ) -> FaultRun:
        """Run the CLI to its end; fail the test if any secret reached any output.

        unjoin: the nodes are not joined when the run starts (Lab.forget_joins), so a test
        may run the same nodes again; False runs them as the last run left them.
        """
        if unjoin:
            self.lab.forget_joins()
        command = self.command(config, run_name, *args)
        peak_file = self.workdir / f"{run_name}.peak-rss"
        if measure_memory:
            command = [sys.executable, "-c", _PEAK_RSS_LAUNCHER, str(peak_file), *command]
        completed = subprocess.run(
            command,
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        peak = int(peak_file.read_text()) if measure_memory else None
        run = FaultRun(
            completed.returncode, completed.stdout, completed.stderr, self.run_dir(run_name), peak
        )
        return self.checked(run)

    def start(self, config: Path, run_name: str, *args: str) -> subprocess.Popen[str]:
        """Start the CLI in the background (see finish) on nodes that are not joined."""
        self.lab.forget_joins()
        return subprocess.Popen(
            self.command(config, run_name, *args),
            cwd=self.workdir,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(
        self,
        process: subprocess.Popen[str],
        run_name: str,
        stdout_seen: str = "",
        timeout: float = 120,
    ) -> FaultRun:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        run = FaultRun(process.returncode, stdout_seen + stdout, stderr, self.run_dir(run_name))
        return self.checked(run)

    def run_watching_keadm(
        self, config: Path, run_name: str, nodes: Sequence[str], *args: str
    ) -> tuple[FaultRun, dict[str, list[str]]]:
        """Run the CLI to its end (see run), and take each node's process list once while its
        keadm join runs (make keadm slow, e.g. --fake-sleep=3, so that it can be seen)."""
        process = self.start(config, run_name, *args)
        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 60
        while len(seen) < len(nodes) and time.monotonic() < deadline and process.poll() is None:
            for name in set(nodes) - seen.keys():
                command_lines = list(self.lab.processes(name).values())
                if any("./keadm join" in line for line in command_lines):
                    seen[name] = command_lines
            time.sleep(0.05)
        return self.finish(process, run_name), seen

    def checked(self, run: FaultRun) -> FaultRun:
        assert "Traceback" not in run.stdout + run.stderr, run.stderr
        leaks = leaked_secrets(self.secrets, run.outputs())
        assert not leaks, f"secrets leaked: {leaks}"
        return run

    def run_dir(self, run_name: str) -> Path:
        return self.workdir / "runs" / run_name

    def env(self) -> dict[str, str]:
        # HOME in the workdir: the run never reads or learns the real ~/.ssh/known_hosts.
        return {**os.environ, "HOME": str(self.workdir)}

    def assert_healthy_ok(self, run: FaultRun, names: Sequence[str] = HEALTHY_NODES) -> None:
        for name in names:
            assert run.record(name)["status"] == "ok", run.record(name)
            assert self.lab.join_records(name), f"{name} never ran keadm"


class FaultLabFactory(Protocol):
    def __call__(self, nodes: int = 3, tmp_size_mb: int = DEFAULT_TMP_SIZE_MB) -> FaultLab: ...


@pytest.fixture
def make_fault_lab(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> FaultLabFactory:
    """Labs of a test's own (stopped after it), wrapped in FaultLab."""

    def make(nodes: int = 3, tmp_size_mb: int = DEFAULT_TMP_SIZE_MB) -> FaultLab:
        lab = make_lab(nodes=nodes, tmp_size_mb=tmp_size_mb)
        workdir = tmp_path / f"work-{lab.subnet}"
        workdir.mkdir()
        return FaultLab(lab, workdir, offline_dir_of(lab_packages))

    return make


@pytest.fixture
def fault_lab(make_fault_lab: FaultLabFactory) -> FaultLab:
    """Three amd64 nodes: node-001 for the fault, node-002 and node-003 to stay healthy."""
    return make_fault_lab()


def stray_processes(lab: Lab, name: str) -> list[str]:
    """Command lines of whatever still runs on the node besides its sshd (keadm, a sleep...)."""
    return [
        command
        for command in lab.processes(name).values()
        if not command.startswith(("sshd", "/usr/sbin/sshd"))
    ]


def kill_node_sshd(lab: Lab, name: str) -> None:
    """Kill the node's sshd listener and every session it serves (the SFTP server included).

    stop_sshd stops the listener only; an open session lives in processes of its own.
    """
    lab.stop_sshd(name, signal.SIGKILL)
    for pid in lab.processes(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
