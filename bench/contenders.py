"""The contenders: how each tool is told to do the job (argv and environment)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.job import CLOUDCORE, STAGING, TOKEN, Job

BENCH_DIR = Path(__file__).resolve().parent
TOOLS_VENV = BENCH_DIR / ".venv-ansible"
KENORNIR = "kenornir"
KENORNIR_SECOND_RUN = "kenornir (2nd run)"
# kenornir with --transfer sftp: the path it takes on nodes whose userland cannot stream (BusyBox).
KENORNIR_SFTP = "kenornir-sftp"
# kenornir's first run: an empty package cache and a fresh HOME, preparation inside the run.
KENORNIR_COLD = "kenornir-cold"
# kenornir --broker: the same nodes through Redis and one `kenornir worker` on this machine.
KENORNIR_BROKER = "kenornir-broker"
OPENSSH = "openssh"
ANSIBLE = "ansible"
CONTENDERS = (KENORNIR, KENORNIR_COLD, KENORNIR_SFTP, KENORNIR_BROKER, OPENSSH, ANSIBLE)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the bench's environment


@dataclass(frozen=True)
class RunPaths:
    """Where one run keeps its own state (kenornir's run dir, known_hosts and cache)."""

    run_dir: Path
    known_hosts: Path
    cache_dir: Path


def kenornir(job: Job, paths: RunPaths) -> Command:
    return Command(
        [
            *(sys.executable, "-m", "kenornir", str(job.kenornir_config)),
            *("--run-dir", str(paths.run_dir), "--known-hosts", str(paths.known_hosts)),
            *("--cache-dir", str(paths.cache_dir), "--workers", str(job.workers)),
            "--no-progress",
        ]
    )


def kenornir_sftp(job: Job, paths: RunPaths) -> Command:
    command = kenornir(job, paths)
    return Command([*command.argv, "--transfer", "sftp"], command.env)


def kenornir_cold(job: Job, paths: RunPaths) -> Command:
    """kenornir as a new user runs it: nothing cached, its cache made inside the timed run."""
    fresh = paths.run_dir / "fresh"
    command = kenornir(job, RunPaths(paths.run_dir, paths.known_hosts, fresh / "cache"))
    return Command(command.argv, {**command.env, "HOME": str(fresh / "home")})


def kenornir_broker(job: Job, paths: RunPaths) -> Command:
    command = kenornir(job, paths)
    if job.broker is None:
        raise ValueError("the kenornir-broker contender needs the bench's Redis (job.broker)")
    return Command([*command.argv, "--broker", job.broker], command.env)


def kenornir_prepare(job: Job, cache_dir: Path) -> Command:
    """Fill kenornir's package cache, as the other contenders get their binaries unpacked."""
    return Command(
        [
            *(sys.executable, "-m", "kenornir", "prepare", str(job.kenornir_config)),
            *("--cache-dir", str(cache_dir)),
        ]
    )


def openssh(job: Job, paths: RunPaths) -> Command:
    return Command(
        [
            *("xargs", "-P", str(job.workers), "-L", "1", "-a", str(job.hosts_file)),
            str(BENCH_DIR / "openssh_push.sh"),
        ],
        {
            "KEY": str(job.key_path),
            "COPY_FROM": str(job.copy_from),
            "STAGING": STAGING,
            "TOKEN": TOKEN,
            "CLOUDCORE": CLOUDCORE,
        },
    )


def ansible(job: Job, paths: RunPaths) -> Command:
    return Command(
        [
            str(TOOLS_VENV / "bin" / "ansible-playbook"),
            *("-i", str(job.ansible_inventory), "-f", str(job.workers)),
            str(BENCH_DIR / "ansible" / "push.yml"),
        ],
        {
            "ANSIBLE_CONFIG": str(BENCH_DIR / "ansible" / "ansible.cfg"),
            # Its own control sockets and temp files: nothing shared with a user's ~/.ansible.
            "ANSIBLE_LOCAL_TEMP": str(paths.run_dir / "ansible-local"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(paths.run_dir / "ansible-cp"),
            "PATH": f"{TOOLS_VENV / 'bin'}:{os.environ.get('PATH', '')}",
        },
    )


COMMANDS: Mapping[str, Callable[[Job, RunPaths], Command]] = {
    KENORNIR: kenornir,
    KENORNIR_SECOND_RUN: kenornir,
    KENORNIR_COLD: kenornir_cold,
    KENORNIR_SFTP: kenornir_sftp,
    KENORNIR_BROKER: kenornir_broker,
    OPENSSH: openssh,
    ANSIBLE: ansible,
}
