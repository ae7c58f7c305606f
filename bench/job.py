"""The one job every contender does: the files, the binaries per arch and each tool's inventory."""

from __future__ import annotations

import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.lab.inventory import batch_config, node_entry
from tests.lab.node import LabNode

STAGING = "/tmp/kubeedge/keadm"
TOKEN = "5f0c1b2a3d4e5f60718293a4b5c6d7e8.eyJhbGciOiJSUzI1NiJ9.bench"
CLOUDCORE = "127.0.0.1:10000"
# The copyFrom dir: three small files, as an operator ships a pre-run script and some settings.
COPY_FROM_FILES = {
    "install-containerd.sh": "#!/bin/bash\necho 'containerd: already installed (bench)'\n",
    "edge-config.env": "EDGE_SITE=bench\nEDGE_ZONE=loopback\n",
    "registry-mirror.conf": "[plugins.cri.registry.mirrors]\n  endpoint = ['127.0.0.1:5000']\n",
}


@dataclass(frozen=True)
class Job:
    """Everything a contender needs to push the job to the nodes."""

    nodes: Sequence[LabNode]  # as clients reach them (the relay's port behind an edge link)
    key_path: Path
    workers: int
    binaries: Mapping[str, Path]  # GOARCH -> the unpacked keadm binary
    copy_from: Path
    kenornir_config: Path
    hosts_file: Path  # for OpenSSH: one "NAME ADDRESS PORT BINARY" line per node
    ansible_inventory: Path
    broker: str | None = None  # the Redis of the kenornir-broker contender, when it runs

    @property
    def binary_size(self) -> int:
        return next(iter(self.binaries.values())).stat().st_size


def join_arguments(node_name: str, token: str) -> str:
    """The keadm command line after `keadm`, the same for every contender."""
    return f"join --cloudcore-ipport={CLOUDCORE} --edgenode-name={node_name} --token={token}"


def write_job(
    work_dir: Path,
    nodes: Sequence[LabNode],
    key_path: Path,
    packages: Mapping[str, Path],
    workers: int,
) -> Job:
    """Write the job's files under work_dir for these nodes.

    Args:
        packages: the lab's keadm tarballs by GOARCH (kenornir reads them as its
            offlinePackageDir; the other contenders get the binaries unpacked).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    copy_from = work_dir / "copy-from"
    copy_from.mkdir(exist_ok=True)
    for name, text in COPY_FROM_FILES.items():
        (copy_from / name).write_text(text)
    bin_dir = work_dir / "bin"
    binaries = {
        arch: _unpacked_keadm(tarball, bin_dir / arch) for arch, tarball in packages.items()
    }
    offline_dir = next(iter(packages.values())).parent.parent
    job = Job(
        nodes=nodes,
        key_path=key_path,
        workers=workers,
        binaries=binaries,
        copy_from=copy_from,
        kenornir_config=work_dir / "kenornir.yaml",
        hosts_file=work_dir / "hosts.txt",
        ansible_inventory=work_dir / "ansible-hosts.ini",
    )
    _write_kenornir_config(job, offline_dir, list(packages))
    job.hosts_file.write_text(
        "".join(
            f"{node.name} {node.address} {node.port} {binaries[node.goarch]}\n" for node in nodes
        )
    )
    _write_ansible_inventory(job)
    return job


def _unpacked_keadm(tarball: Path, directory: Path) -> Path:
    """The keadm binary out of an upstream-layout tarball (kept across bench invocations)."""
    binary = directory / "keadm"
    with tarfile.open(tarball, "r:gz") as archive:
        member = next(m for m in archive if m.isfile() and m.name.endswith("/keadm/keadm"))
        if binary.is_file() and binary.stat().st_size == member.size:
            return binary
        source = archive.extractfile(member)
        assert source is not None  # a regular file member always has content
        directory.mkdir(parents=True, exist_ok=True)
        with source, binary.open("wb") as target:
            while chunk := source.read(1024 * 1024):
                target.write(chunk)
    binary.chmod(0o755)
    return binary


def _write_kenornir_config(job: Job, offline_dir: Path, arches: Sequence[str]) -> None:
    nodes = [
        node_entry(
            node.name,
            node.address,
            node.port,
            cmd=join_arguments(node.name, "{{.token}}"),
            key_path=job.key_path,
            copy_from=job.copy_from,
        )
        for node in job.nodes
    ]
    config = batch_config(
        nodes,
        offline_dir,
        cmd_tpl_args={"token": TOKEN},
        arch_group=arches,
        max_run_num=job.workers,
    )
    job.kenornir_config.write_text(yaml.safe_dump(config, sort_keys=False))


def _write_ansible_inventory(job: Job) -> None:
    lines = ["[edge]"]
    lines += [
        f"{node.name} ansible_host={node.address} ansible_port={node.port}"
        f" keadm_binary={job.binaries[node.goarch]}"
        for node in job.nodes
    ]
    lines += [
        "",
        "[edge:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={job.key_path}",
        f"copy_from={job.copy_from}",
        f"staging={STAGING}",
        f"token={TOKEN}",
        f"cloudcore={CLOUDCORE}",
    ]
    job.ansible_inventory.write_text("\n".join(lines) + "\n")
