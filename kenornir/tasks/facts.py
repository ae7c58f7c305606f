"""Facts about a node: its CPU arch, mapped to keadm's package arch names."""

from __future__ import annotations

from nornir.core.task import Result, Task

from kenornir.connection import node_ssh
from kenornir.outcome import StageFailed

# `uname -m` values, mapped as upstream keadm batch does.
UNAME_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "arm32": "arm",
    "arm": "arm",
}


def map_arch(machine: str) -> str:
    """keadm's arch name for a `uname -m` value; StageFailed for one keadm does not ship."""
    try:
        return UNAME_TO_ARCH[machine]
    except KeyError:
        known = ", ".join(sorted(UNAME_TO_ARCH))
        raise StageFailed(f"unsupported CPU arch '{machine}' (keadm ships for {known})") from None


def detect_arch(task: Task) -> Result:
    """Detect the node's arch and check a keadm package is prepared for it.

    Returns:
        Result whose `result` is the keadm arch name (amd64, arm64, arm).
    Raises:
        StageFailed: unknown arch, or an arch missing from keadm.archGroup.
    """
    output = node_ssh(task).run("uname -m", as_root=False)
    machine = output.stdout.strip()
    if output.exit_status != 0 or not machine:
        raise StageFailed(f"`uname -m` failed (exit {output.exit_status}): {output.stderr.strip()}")
    arch = map_arch(machine)
    arch_group: list[str] = task.host.data["arch_group"]
    needs_package = task.host.data["keadm_bin_dir"] is None
    if needs_package and arch not in arch_group:
        raise StageFailed(
            f"node arch is {arch} ({machine}) but no package is prepared for it "
            f"(add {arch} to keadm.archGroup)"
        )
    return Result(host=task.host, result=arch, changed=False)
