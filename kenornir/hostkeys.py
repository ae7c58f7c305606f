"""Host key verification against an OpenSSH known_hosts file: accept-new, strict or ignore."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import paramiko

log = logging.getLogger(__name__)

HostKeyPolicyName = Literal["accept-new", "strict", "ignore"]
HOST_KEY_POLICIES: tuple[str, ...] = get_args(HostKeyPolicyName)

# Every worker thread checks and learns keys in the same file: one lock serialises the
# read-compare-append so two new hosts never interleave their lines.
_known_hosts_lock = threading.Lock()

REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"
# The algorithms (OpenSSH's HostKeyAlgorithms names) a server presents a key of this type
# with; any other type is its own algorithm. paramiko offers only those it implements.
_ALGORITHMS_OF_KEY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
# What paramiko raises when the server offers none of the host key algorithms we offer.
_NO_ACCEPTABLE_HOST_KEY = "no acceptable host key"


class HostKeyError(paramiko.SSHException):
    """The node's host key was refused; the message says which file and line to look at."""


@dataclass(frozen=True)
class KnownHostsLine:
    """One valid key line of a known_hosts file whose host patterns name the host looked up."""

    number: int  # 1-based
    marker: str  # "", REVOKED or CERT_AUTHORITY
    key_type: str
    key_blob: bytes

    def holds(self, key: paramiko.PKey) -> bool:
        return self.key_blob == key.asbytes()


def known_host_name(hostname: str, port: int) -> str:
    """The name OpenSSH files a host under: `host` on port 22, `[host]:port` otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def host_field_matches(host_field: str, host_name: str) -> bool:
    """The host field of a known_hosts line names host_name, as OpenSSH reads it.

    A hashed field (`|1|salt|hmac`) names one host. Otherwise it is a comma list of patterns
    with `*` and `?` wildcards, where a matching `!pattern` excludes the host whatever else
    matches. Names compare case-insensitively (OpenSSH lowercases them before looking up).
    """
    name = host_name.lower()
    if host_field.startswith("|"):
        return _hashed_name_matches(host_field, name)
    matched = False
    for pattern in host_field.split(","):
        negated = pattern.startswith("!")
        if _wildcard(pattern[1:] if negated else pattern).fullmatch(name):
            if negated:
                return False
            matched = True
    return matched


def _hashed_name_matches(host_field: str, name: str) -> bool:
    parts = host_field.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        digest = base64.b64decode(parts[3], validate=True)
    except binascii.Error:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


@functools.lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


def lines_for_host(
    known_hosts: Path, host_name: str, on_bad_line: Callable[[str], None] | None = None
) -> list[KnownHostsLine]:
    """The valid key lines of known_hosts that name host_name, in file order.

    A line naming the host that OpenSSH would skip (unknown marker, unreadable key) is skipped
    too, and described to on_bad_line: the operator may believe it protects the host.

    Raises:
        HostKeyError: known_hosts exists but cannot be read.
    """
    try:
        text = known_hosts.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostKeyError(
            f"cannot check the host key: cannot read {known_hosts}: {exc.strerror or exc}"
        ) from None
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) < 3 or not host_field_matches(fields[0], host_name):
            continue
        key_type = fields[1]
        if marker not in ("", REVOKED, CERT_AUTHORITY):
            problem = f"unknown marker {marker}"
        elif (blob := _key_blob(key_type, fields[2])) is None:
            problem = f"not a readable {key_type} key"
        else:
            found.append(KnownHostsLine(number, marker, key_type, blob))
            continue
        if on_bad_line is not None:
            on_bad_line(f"line {number} of {known_hosts} ignored: {problem}")
    return found


def _key_blob(key_type: str, key_text: str) -> bytes | None:
    """The key's wire encoding, or None when it is not base64 of a key of key_type."""
    try:
        blob = base64.b64decode(key_text, validate=True)
    except binascii.Error:
        return None
    # The blob starts with its own type name, which OpenSSH requires to match the line's.
    return blob if paramiko.Message(blob).get_string() == key_type.encode() else None


def _plain_keys(lines: Sequence[KnownHostsLine]) -> list[KnownHostsLine]:
    # @cert-authority lines vouch for host certificates, which kenornir does not check: they
    # make no key known (such a host counts as new), and @revoked lines only ever refuse.
    return [line for line in lines if line.marker == ""]


def _lines_text(lines: Sequence[KnownHostsLine], known_hosts: Path) -> str:
    numbers = ", ".join(str(line.number) for line in lines)
    return f"line{'s' if len(lines) > 1 else ''} {numbers} of {known_hosts}"


def _changed(known_hosts: Path, host_name: str, known: Sequence[KnownHostsLine], what: str) -> str:
    """The refusal of a host whose key is not one of its known lines, and how to undo it."""
    types = ", ".join(sorted({line.key_type for line in known}))
    return (
        f"host key of {host_name} changed ({what}; {known_hosts} holds {types}): possible "
        f"man-in-the-middle; remove {_lines_text(known, known_hosts)} "
        f"(ssh-keygen -R '{host_name}' -f {known_hosts}) if the node was reinstalled"
    )


def _append_known_key(known_hosts: Path, host_name: str, key: paramiko.PKey) -> None:
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with known_hosts.open("a", encoding="utf-8") as out:
        out.write(f"{host_name} {key.get_name()} {key.get_base64()}\n")


def verify_host_key(
    known_hosts: Path,
    policy: HostKeyPolicyName,
    host_name: str,
    key: paramiko.PKey,
    on_bad_line: Callable[[str], None] | None = None,
) -> str | None:
    """Accept key for host_name under policy, learning it when the policy says so.

    A key on a matching @revoked line is refused under every policy. When known_hosts holds
    any key for the host, any other key is a changed one, whatever its type.

    Returns a warning for the node's log when a changed key was accepted (policy ignore).
    Raises HostKeyError when the key is refused.
    """
    presented = f"{key.get_name()} {key.fingerprint}"
    with _known_hosts_lock:
        lines = lines_for_host(known_hosts, host_name, on_bad_line)
        revoked = [line for line in lines if line.marker == REVOKED and line.holds(key)]
        if revoked:
            raise HostKeyError(
                f"host key of {host_name} ({presented}) is revoked by "
                f"{_lines_text(revoked, known_hosts)}: refused under every host key policy"
            )
        known = _plain_keys(lines)
        if any(line.holds(key) for line in known):
            return None
        if known and policy == "ignore":
            warning = _changed(known_hosts, host_name, known, f"it presented {presented}")
            warning += "; accepted under --host-key-policy ignore"
            log.warning("%s", warning)
            return warning
        if known:
            raise HostKeyError(_changed(known_hosts, host_name, known, f"it presented {presented}"))
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
    """Checks one node's host key: what its transport offers, then the key it presents.

    The SSHClient loads no host keys, so every key comes through missing_host_key.
    `notices` collects warnings for the node's log (accepted changed keys, skipped lines).
    """

    def __init__(
        self, known_hosts: Path, policy: HostKeyPolicyName, hostname: str, port: int
    ) -> None:
        self.known_hosts = known_hosts
        self.policy = policy
        # The name paramiko passes to missing_host_key too; needed before that, for transport.
        self.host_name = known_host_name(hostname, port)
        self.notices: list[str] = []
        # The known keys the transport was limited to, and whether paramiko can check any.
        self._offered_only: list[KnownHostsLine] = []
        self._any_checkable = True

    def transport(
        self, make_transport: Callable[..., paramiko.Transport], sock: Any, /, **options: Any
    ) -> paramiko.Transport:
        """make_transport(sock, **options), offering the host key types known for the node.

        For SSHClient.connect's transport_factory, through functools.partial. Like OpenSSH:
        when known_hosts holds keys for the node, a node that can present one of them must,
        and one that cannot fails the key exchange (see explain) instead of presenting an
        unknown key of another type. Under policy ignore the known types only come first.
        """
        try:
            with _known_hosts_lock:
                known = _plain_keys(lines_for_host(self.known_hosts, self.host_name))
        except HostKeyError:
            sock.close()  # SSHClient closes the socket only once a transport has it
            raise
        transport = make_transport(sock, **options)
        security = transport.get_security_options()
        if not known:
            return transport
        usable = {
            algorithm
            for line in known
            for algorithm in _ALGORITHMS_OF_KEY_TYPE.get(line.key_type, (line.key_type,))
        }
        matching = tuple(a for a in security.key_types if a in usable)
        if self.policy == "ignore":
            security.key_types = matching + tuple(a for a in security.key_types if a not in usable)
        else:
            security.key_types = matching
            self._offered_only = known
            self._any_checkable = bool(matching)
        return transport

    def explain(self, exc: Exception) -> Exception:
        """exc, or the host key refusal it stands for: the node offered no known key type."""
        if not (
            self._offered_only
            and isinstance(exc, paramiko.ssh_exception.IncompatiblePeer)
            and _NO_ACCEPTABLE_HOST_KEY in str(exc)
        ):
            return exc
        what = (
            "it offers none of the key types known for it"
            if self._any_checkable
            else "kenornir cannot check any of the key types known for it"
        )
        return HostKeyError(_changed(self.known_hosts, self.host_name, self._offered_only, what))

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        notice = verify_host_key(
            self.known_hosts, self.policy, self.host_name, key, self._note_bad_line
        )
        if notice is not None:
            self.notices.append(notice)

    def _note_bad_line(self, message: str) -> None:
        log.warning("%s", message)
        self.notices.append(message)
