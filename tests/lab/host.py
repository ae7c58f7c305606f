"""What this machine needs to host a lab, and getting it ready (mount points, sudo)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
# Mount points the nodes cover with their own tmpfs; sshd refuses to start without /run/sshd.
# Each node mounts a tmpfs of its own on these; on the host they stay empty dirs.
_MOUNT_POINTS = (Path("/var/lib/kubeedge"), Path("/etc/kubeedge"), Path("/run/sshd"))

log = logging.getLogger(__name__)


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot host a lab (not root, no unshare/nsenter, no sshd), or None."""
    if os.geteuid() != 0:
        return "the lab needs root (mount namespaces, sshd logins as other users)"
    for tool in ("unshare", "nsenter", "openssl"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (util-linux / openssl), which is not installed"
    if not os.access(SSHD, os.X_OK):
        return f"the lab needs OpenSSH's sshd at {SSHD} (apt-get install openssh-server)"
    return None


def prepare_host() -> None:
    """Create the nodes' mount points and install Debian's sudo when it is missing.

    Raises:
        RuntimeError: the machine cannot host a lab, or sudo could not be installed.
    """
    reason = lab_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    for mount_point in _MOUNT_POINTS:
        mount_point.mkdir(mode=0o755, parents=True, exist_ok=True)
    if shutil.which("sudo") is None:
        _install_sudo()


def _install_sudo() -> None:
    log.info("installing Debian's sudo for the lab's edge user")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "sudo"]
    if subprocess.run(install, check=False, env=environment, capture_output=True).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=environment)
        result = subprocess.run(
            install, check=False, env=environment, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"could not install sudo: {result.stderr.strip()}")
