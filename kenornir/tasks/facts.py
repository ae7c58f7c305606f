"""Facts about a node: its CPU arch (mapped to keadm's arch names), and one probe for all
that the stages before the upload need to know."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nornir.core.task import Result, Task

from kenornir import shell
from kenornir.arch import UNAME_TO_ARCH, keadm_arch
from kenornir.config import STAGING_DIR
from kenornir.connection import CommandResult, node_ssh
from kenornir.joined import EDGECORE_CONFIG
from kenornir.notes import FileVersion, RemoteState, parse_remote_state
from kenornir.outcome import StageFailed
from kenornir.tasks.transfer import staging_owner


def map_arch(machine: str) -> str:
    """keadm's arch name for a `uname -m` value; StageFailed for one keadm does not ship."""
    arch = keadm_arch(machine)
    if arch is None:
        known = ", ".join(sorted(UNAME_TO_ARCH))
        raise StageFailed(f"unsupported CPU arch '{machine}' (keadm ships for {known})")
    return arch


def detect_arch(task: Task) -> Result:
    """Detect the node's arch and, for a batch node, check a keadm package is prepared for it.

    Returns:
        Result whose `result` is the keadm arch name (amd64, arm64, arm).
    Raises:
        StageFailed: unknown arch, or (a batch node) an arch missing from keadm.archGroup.
    """
    output = node_ssh(task).run(shell.script("uname -m"), as_root=False)
    return Result(host=task.host, result=_arch_of(task, output), changed=False)


@dataclass(frozen=True)
class NodeFacts:
    """What one command learns of a node before anything is written to it."""

    arch: str
    staging: str  # what shell.staging_check says of the staging dirs, for stage_dir
    remote: RemoteState  # which files it holds already and whether it has zstd, for upload_files
    joined: bool = False  # EDGECORE_CONFIG exists: keadm would refuse to join it again


def probe_node(
    task: Task,
    versions: Sequence[FileVersion] = (),
    staging: str = STAGING_DIR,
    parts: Sequence[str] = (),
) -> Result:
    """detect_arch, stage_dir's check of the staging dirs, upload_files' check of the files
    the node holds and whether it is joined already, in one command: one round trip where four
    would do.

    Args:
        versions: the files the node may need; keadm once per arch, as the arch is not known
            until the answer comes.
        parts: part files of those (tasks.files.part_paths) a cut upload may have left, whose
            sizes say where their uploads resume.
    Returns:
        Result whose `result` is the node's NodeFacts.
    Raises:
        StageFailed: as detect_arch.
    """
    ssh = node_ssh(task)
    paths = [version.remote for version in versions]
    script = shell.probe(staging, staging_owner(ssh), paths, EDGECORE_CONFIG, parts)
    output = ssh.run(script, as_root=False)
    sections = output.stdout.split(f"{shell.SECTION_MARK}\n")
    if len(sections) != 4:
        complaint = output.stderr.strip().splitlines()[:1] or ["no answer"]
        raise StageFailed(f"probing the node failed (exit {output.exit_status}): {complaint[0]}")
    machine, staging_lines, state_lines, joined = sections
    arch = _arch_of(task, replace(output, stdout=machine))
    facts = NodeFacts(
        arch,
        staging_lines.strip(),
        parse_remote_state(versions, state_lines.splitlines(), parts),
        joined=joined.strip() == "joined",
    )
    return Result(host=task.host, result=facts, changed=False)


def _arch_of(task: Task, output: CommandResult) -> str:
    """The keadm arch for `uname -m`'s output; StageFailed unless a package serves it."""
    machine = output.stdout.strip()
    if output.exit_status != 0 or not machine:
        raise StageFailed(f"`uname -m` failed (exit {output.exit_status}): {output.stderr.strip()}")
    arch = map_arch(machine)
    # Only a batch node (KeadmBatchInventory's host data) has packages prepared per arch.
    arch_group: list[str] | None = task.host.data.get("arch_group")
    needs_package = arch_group is not None and task.host.data.get("keadm_bin_dir") is None
    if needs_package and arch not in (arch_group or ()):
        raise StageFailed(
            f"node arch is {arch} ({machine}) but no package is prepared for it "
            f"(add {arch} to keadm.archGroup)"
        )
    return arch
