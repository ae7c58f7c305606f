"""Host key verification against an OpenSSH known_hosts file: accept-new, strict or ignore."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import paramiko
from paramiko.hostkeys import HostKeyEntry

log = logging.getLogger(__name__)

HostKeyPolicyName = Literal["accept-new", "strict", "ignore"]
HOST_KEY_POLICIES: tuple[str, ...] = get_args(HostKeyPolicyName)

# Every worker thread checks and learns keys in the same file: one lock serialises the
# read-compare-append so two new hosts never interleave their lines.
_known_hosts_lock = threading.Lock()


class HostKeyError(paramiko.SSHException):
    """The node's host key was refused; the message says which file and line to look at."""


@dataclass(frozen=True)
class KnownKey:
    line_number: int
    key: paramiko.PKey


def known_host_name(hostname: str, port: int) -> str:
    """The name OpenSSH files a host under: `host` on port 22, `[host]:port` otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _entry_matches(entry_name: str, host_name: str) -> bool:
    if entry_name.startswith("|1|"):
        salt = entry_name.split("|")[2]
        return paramiko.HostKeys.hash_host(host_name, salt) == entry_name
    return entry_name == host_name


def find_known_keys(known_hosts: Path, host_name: str) -> list[KnownKey]:
    """Every key recorded for host_name in known_hosts, with its 1-based line number."""
    if not known_hosts.exists():
        return []
    found = []
    with known_hosts.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith(("#", "@")):
                continue
            try:
                entry = HostKeyEntry.from_line(line, lineno=number)
            except (paramiko.SSHException, ValueError):
                continue
            if entry is not None and any(_entry_matches(n, host_name) for n in entry.hostnames):
                found.append(KnownKey(number, entry.key))
    return found


def _append_known_key(known_hosts: Path, host_name: str, key: paramiko.PKey) -> None:
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with known_hosts.open("a", encoding="utf-8") as out:
        out.write(f"{host_name} {key.get_name()} {key.get_base64()}\n")


def verify_host_key(
    known_hosts: Path, policy: HostKeyPolicyName, host_name: str, key: paramiko.PKey
) -> str | None:
    """Accept key for host_name under policy, learning it when the policy says so.

    Returns a warning for the node's log when a changed key was accepted (policy ignore).
    Raises HostKeyError when the policy refuses the key.
    """
    with _known_hosts_lock:
        known = find_known_keys(known_hosts, host_name)
        same_type = [k for k in known if k.key.get_name() == key.get_name()]
        if any(k.key == key for k in same_type):
            return None
        if same_type:
            stale = same_type[0]
            removal = (
                f"remove line {stale.line_number} of {known_hosts} "
                f"(ssh-keygen -R '{host_name}' -f {known_hosts}) if the node was reinstalled"
            )
            if policy == "ignore":
                warning = (
                    f"host key of {host_name} changed ({key.get_name()} {key.fingerprint}); "
                    f"accepted under --host-key-policy ignore; {removal}"
                )
                log.warning("%s", warning)
                return warning
            raise HostKeyError(
                f"host key of {host_name} changed ({key.get_name()} "
                f"{key.fingerprint}): possible man-in-the-middle; {removal}"
            )
        if policy == "strict":
            raise HostKeyError(
                f"host key of {host_name} is not in {known_hosts} (policy strict: add it with "
                f"ssh-keyscan, or use --host-key-policy accept-new)"
            )
        if policy == "accept-new":
            _append_known_key(known_hosts, host_name, key)
            log.info("learned host key of %s into %s", host_name, known_hosts)
        return None


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko hook: the client loads no host keys, so every key comes through here.

    `notices` collects the warnings of accepted changed keys, for the node's log.
    """

    def __init__(self, known_hosts: Path, policy: HostKeyPolicyName) -> None:
        self.known_hosts = known_hosts
        self.policy = policy
        self.notices: list[str] = []

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        # paramiko already passes `[host]:port` for non-default ports.
        notice = verify_host_key(self.known_hosts, self.policy, hostname, key)
        if notice is not None:
            self.notices.append(notice)
