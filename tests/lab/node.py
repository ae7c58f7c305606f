"""One lab node: a mount-namespace holder with the node's private mounts, and an sshd inside it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.lab.accounts import write_ed25519_key
from tests.lab.host import SSHD

UNAME_TO_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}
ARCH_CYCLE = ("x86_64", "aarch64", "armv7l")
SSH_PORT = 22
KUBEEDGE_TMPFS_MB = 64
HOME_TMPFS_MB = 16
# Host key types a node can have (ssh-keygen -t names); every node has ed25519, the first.
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")

_UNAME_WRAPPER = Path(__file__).with_name("uname_wrapper.sh")
# A busybox node's userland: Debian's busybox in place of these coreutils/tar programs, as on
# an embedded edge device (its `head -c` reads ahead through stdio).
Flavour = Literal["coreutils", "busybox"]
BUSYBOX = Path("/usr/bin/busybox")
BUSYBOX_TOOLS = ("head", "stat", "tar")
HOLDER_TAG = "kenornir-lab-holder"
_SLEEP = Path("/usr/bin/sleep")

# Runs as root in a fresh private mount namespace (unshare) and keeps it alive afterwards as a
# tagged `sleep infinity`; sshd and Lab.exec enter it with nsenter. Arguments:
# $1 state dir, $2 node dir, $3 uname -m answer, $4 /tmp size in MiB, $5 /var/lib/kubeedge
# (and /etc/kubeedge) size in MiB, $6 /home and /root size in MiB, $7 flavour (BUSYBOX_TOOLS
# are BusyBox's on a busybox node).
_HOLDER_SCRIPT = r"""
set -eu
state=$1 node_dir=$2 machine=$3 tmp_mb=$4 kubeedge_mb=$5 home_mb=$6 flavour=$7
exec 3<"$state"
mount -t tmpfs -o "size=${tmp_mb}m,mode=1777" kenornir-lab-tmp /tmp
mount -t tmpfs -o "size=${kubeedge_mb}m,mode=0755" kenornir-lab-kubeedge /var/lib/kubeedge
mount -t tmpfs -o "size=${kubeedge_mb}m,mode=0755" kenornir-lab-etc-kubeedge /etc/kubeedge
mount -t tmpfs -o "size=${home_mb}m,mode=0755" kenornir-lab-home /home
mount -t tmpfs -o "size=${home_mb}m,mode=0700" kenornir-lab-root /root
# A state dir under /tmp, /home or /root is now hidden: bind it back from the fd opened before.
if ! [ "$state" -ef /proc/self/fd/3 ]; then
    mkdir -p "$state"
    mount --no-canonicalize --bind /proc/self/fd/3 "$state"
fi
exec 3<&-
cp -a "$state/skel/root/." /root/
cp -a "$state/skel/home/." /home/
for name in passwd group shadow sudoers.d; do
    mount --bind "$state/etc/$name" "/etc/$name"
done
mount --bind "$state/bin/uname-$machine" /usr/bin/uname
if [ "$flavour" = busybox ]; then
    for tool in @BUSYBOX_TOOLS@; do
        mount --bind "$state/bin/busybox-$tool" "/usr/bin/$tool"
    done
fi
echo ready
exec -a "kenornir-lab-holder:$node_dir" sleep infinity >/dev/null
""".replace("@BUSYBOX_TOOLS@", " ".join(BUSYBOX_TOOLS))


@dataclass(frozen=True)
class LabNode:
    """A lab node as clients see it: `ssh root@address -p port`, `uname -m` prints arch."""

    name: str
    address: str
    port: int
    arch: str
    tmp_size_mb: int
    flavour: Flavour = "coreutils"
    # The lab site whose bastion the node is reached through: it lives in that site's network
    # namespace. None: on this machine's loopback (see site.py).
    site: str | None = None

    @property
    def goarch(self) -> str:
        """The keadm package arch for this node (amd64, arm64, arm)."""
        return UNAME_TO_GOARCH[self.arch]


def node_name(index: int) -> str:
    """node-001 for index 0."""
    return f"node-{index + 1:03d}"


def write_wrappers(state_dir: Path) -> None:
    """state/bin/uname-<arch> per arch personality, calling a copy of the real uname, and
    state/bin/busybox-<tool>: BusyBox's applet, which busybox picks by the name it is run as."""
    bin_dir = state_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    real_uname = bin_dir / "uname.real"
    if not real_uname.exists():
        shutil.copy2("/usr/bin/uname", real_uname)
    template = _UNAME_WRAPPER.read_text().replace("@REAL_UNAME@", str(real_uname))
    for machine in ARCH_CYCLE:
        wrapper = bin_dir / f"uname-{machine}"
        wrapper.write_text(template.replace("@MACHINE@", machine))
        wrapper.chmod(0o755)
    for tool in BUSYBOX_TOOLS:
        wrapper = bin_dir / f"busybox-{tool}"
        wrapper.write_text(f'#!/bin/sh\nexec {BUSYBOX} {tool} "$@"\n')
        wrapper.chmod(0o755)


def prepare_node_dir(node_dir: Path, node: LabNode, extra_options: str = "") -> None:
    """The node's host key (kept across restarts unless rotated) and its sshd_config.

    extra_options go first in the config: sshd takes the first value of each keyword, so they
    override the node's own (a bastion's LogLevel, say).
    """
    node_dir.mkdir(parents=True, exist_ok=True)
    if not host_key_path(node_dir).is_file():
        write_ed25519_key(host_key_path(node_dir), comment=node.name)
    sshd_config_path(node_dir).write_text(_sshd_config(node_dir, node, extra_options))


def host_key_path(node_dir: Path, key_type: str = HOST_KEY_TYPES[0]) -> Path:
    return node_dir / f"ssh_host_{key_type}_key"


def add_host_key(node_dir: Path, key_type: str, comment: str) -> None:
    """Give the node a host key of another type; its sshd offers it from its next start."""
    if key_type not in HOST_KEY_TYPES:
        raise ValueError(f"host key type must be one of {HOST_KEY_TYPES}, not {key_type!r}")
    path = host_key_path(node_dir, key_type)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def sshd_config_path(node_dir: Path) -> Path:
    return node_dir / "sshd_config"


def _sshd_config(node_dir: Path, node: LabNode, extra_options: str) -> str:
    host_keys = "\n".join(
        f"HostKey {host_key_path(node_dir, key_type)}"
        for key_type in HOST_KEY_TYPES
        if host_key_path(node_dir, key_type).is_file()
    )
    return f"""\
# kenornir lab node {node.name} ({node.arch}); written by tests/lab, rewritten on every start.
{extra_options}ListenAddress {node.address}:{node.port}
{host_keys}
PidFile none
LogLevel INFO
# Root logins with the lab key or the lab password, the edge user likewise.
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
# Without PAM sshd checks passwords against the node's bind-mounted /etc/shadow itself.
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Sized so a batch can open 100 connections at once without sshd dropping any.
MaxStartups 150
MaxSessions 100
LoginGraceTime 60
Subsystem sftp internal-sftp
"""


def start_holder(
    state_dir: Path, node_dir: Path, node: LabNode, netns: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the node's namespace holder; `wait_holder_ready` then waits for its mounts.

    With netns (a site's /run/netns/<name>) the holder lives in that network namespace, and so
    does everything that enters it (its sshd, Lab.exec). nsenter and unshare exec without
    forking here, so the pid is the holder's own.
    """
    enter_netns = ("nsenter", f"--net={netns}", "--") if netns is not None else ()
    with (node_dir / "holder.log").open("ab") as log_file:
        return subprocess.Popen(
            [
                *enter_netns,
                *("unshare", "--mount", "--propagation", "private", "--"),
                *("/bin/bash", "-c", _HOLDER_SCRIPT, HOLDER_TAG),
                *(str(state_dir), str(node_dir), node.arch, str(node.tmp_size_mb)),
                *(str(KUBEEDGE_TMPFS_MB), str(HOME_TMPFS_MB), node.flavour),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )


def wait_holder_ready(holder: subprocess.Popen[bytes], node_dir: Path) -> None:
    """Block until the holder has made all of the node's mounts.

    Raises:
        RuntimeError: the holder failed; the message carries its log.
    """
    assert holder.stdout is not None  # started with stdout=PIPE
    with holder.stdout:
        ready = holder.stdout.readline()
    if ready != b"ready\n":
        holder.wait()
        error = (node_dir / "holder.log").read_text().strip()
        raise RuntimeError(f"{node_dir.name}: namespace setup failed: {error}")


def start_sshd(holder_pid: int, node_dir: Path) -> subprocess.Popen[bytes]:
    """Start the node's sshd inside the holder's mount and network namespaces (the latter
    this machine's own but for a site node); its log: node_dir/sshd.log."""
    with (node_dir / "sshd.log").open("ab") as log_file:
        return subprocess.Popen(
            [
                *("nsenter", f"--target={holder_pid}", "--mount", "--net", "--"),
                *(str(SSHD), "-f", str(sshd_config_path(node_dir)), "-D", "-e"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


Connect = Callable[[tuple[str, int], float], socket.socket]


def read_banner(
    address: str, port: int, timeout: float, connect: Connect = socket.create_connection
) -> str | None:
    """The SSH identification line the server at address:port sends, or None when it does not.

    connect makes the connection (site.netns_connector: from inside a site's namespace).
    """
    try:
        with connect((address, port), timeout) as connection:
            connection.settimeout(timeout)
            received = b""
            while b"\n" not in received and len(received) < 256:
                chunk = connection.recv(256)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return None
    line = received.split(b"\n", 1)[0].strip().decode(errors="replace")
    return line if line.startswith("SSH-") else None


def is_holder(pid: int, node_dir: Path) -> bool:
    """pid is this node's holder (and not a process that reused a recorded pid)."""
    return _process_matches(pid, _SLEEP, f"{HOLDER_TAG}:{node_dir}")


def is_sshd(pid: int, node_dir: Path) -> bool:
    """pid is this node's sshd listener."""
    return _process_matches(pid, SSHD, str(sshd_config_path(node_dir)))


def namespace_members(holder_pid: int) -> list[int]:
    """Every process inside the holder's mount namespace except the holder: the sshd listener,
    its sessions and whatever they started (a hung keadm, say)."""
    try:
        namespace = Path(f"/proc/{holder_pid}/ns/mnt").readlink()
    except OSError:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == holder_pid:
            continue
        try:
            if (entry / "ns" / "mnt").readlink() == namespace:
                members.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile
    return members


def terminate(
    pids: Iterable[int],
    children: dict[int, subprocess.Popen[bytes]],
    grace_seconds: float = 3.0,
) -> None:
    """SIGTERM the processes, SIGKILL those still there after the grace period, wait for all.

    Processes this Python process started are reaped through their Popen in `children`; others
    are polled until gone (a zombie counts as gone).
    """
    pending = set(pids)
    for pid in pending:
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a frozen (SIGSTOPped) process acts on TERM only once woken
    deadline = time.monotonic() + grace_seconds
    killed = False
    while pending:
        pending = {pid for pid in pending if _still_running(pid, children)}
        if not pending:
            break
        if time.monotonic() > deadline:
            if killed:
                raise RuntimeError(f"processes {sorted(pending)} survived SIGKILL")
            for pid in pending:
                _signal(pid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + grace_seconds
        time.sleep(0.02)


def _still_running(pid: int, children: dict[int, subprocess.Popen[bytes]]) -> bool:
    child = children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del children[pid]
        return False
    try:
        with Path(f"/proc/{pid}/stat").open() as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal(pid: int, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal_number)


def _process_matches(pid: int, executable: Path, marker: str) -> bool:
    try:
        running = Path(f"/proc/{pid}/exe").readlink()
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return False
    return running == executable and marker in command_line
