"""The lab's logins: its SSH key, its password and the account files its nodes bind-mount."""

from __future__ import annotations

import itertools
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EDGE_USER = "edge"  # sudo without a password (NOPASSWD), like most fleets' provisioning user
SUDO_PASSWORD_USER = "edgepass"  # sudo asks for the (lab) password every time
# Every node's sudo writes its log (COMMAND=... lines) in the node's private /root.
SUDO_LOG = "/root/sudo.log"
_FIRST_EDGE_ID = 2000
# Days since 1970 for the shadow "last changed" field; any past day keeps the accounts valid.
_SHADOW_LAST_CHANGE = 19000


@dataclass(frozen=True)
class LabAccounts:
    """Paths of the lab's credentials and of the node account files, all under the state dir.

    Nodes bind-mount `etc/passwd`, `etc/group`, `etc/shadow` and `etc/sudoers.d` over the real
    ones and copy `skel/root` and `skel/home` into their private /root and /home, so this
    machine's own accounts and root password never change.
    """

    state_dir: Path

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def password_path(self) -> Path:
        return self.state_dir / "password"

    @property
    def etc_dir(self) -> Path:
        return self.state_dir / "etc"

    @property
    def skel_dir(self) -> Path:
        return self.state_dir / "skel"

    @property
    def password(self) -> str:
        return self.password_path.read_text().strip()

    def prepare(self) -> None:
        """Create the key and password once, then (re)write the account files from this host's."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.key_path.is_file():
            write_ed25519_key(self.key_path, comment="kenornir-lab")
        if not self.password_path.is_file():
            self.password_path.touch(mode=0o600)
            self.password_path.write_text(secrets.token_urlsafe(12) + "\n")
        names = (EDGE_USER, SUDO_PASSWORD_USER)
        users = dict(zip(names, _free_ids(len(names)), strict=True))
        password_hash = _sha512_crypt(self.password)
        self._write_etc(users, password_hash)
        self._write_homes(users)

    def _write_etc(self, users: dict[str, int], password_hash: str) -> None:
        self.etc_dir.mkdir(exist_ok=True)
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        for user, uid in users.items():
            passwd += f"{user}:x:{uid}:{uid}:kenornir lab:/home/{user}:/bin/bash\n"
            group += f"{user}:x:{uid}:\n"
        (self.etc_dir / "passwd").write_text(passwd)
        (self.etc_dir / "group").write_text(group)
        shadow_lines = []
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "root":
                fields[1] = password_hash
            shadow_lines.append(":".join(fields))
        shadow_lines += [
            f"{user}:{password_hash}:{_SHADOW_LAST_CHANGE}:0:99999:7:::" for user in users
        ]
        shadow = self.etc_dir / "shadow"
        shadow.touch(mode=0o640)
        shadow.write_text("\n".join(shadow_lines) + "\n")
        sudoers = self.etc_dir / "sudoers.d"
        if sudoers.exists():
            shutil.rmtree(sudoers)
        if Path("/etc/sudoers.d").is_dir():
            shutil.copytree("/etc/sudoers.d", sudoers)
        sudoers.mkdir(exist_ok=True)
        entry = sudoers / "kenornir-lab"
        entry.write_text(
            f"Defaults logfile={SUDO_LOG}\n"
            f"{EDGE_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"
            # Asked every time, never lectured: the prompt is all kenornir must answer.
            f"Defaults:{SUDO_PASSWORD_USER} timestamp_timeout=0, !lecture\n"
            f"{SUDO_PASSWORD_USER} ALL=(ALL:ALL) ALL\n"
        )
        entry.chmod(0o440)  # sudo ignores sudoers files that are writable

    def _write_homes(self, users: dict[str, int]) -> None:
        if self.skel_dir.exists():
            shutil.rmtree(self.skel_dir)
        public_key = self.key_path.with_suffix(".pub").read_text()
        _write_authorized_keys(self.skel_dir / "root", public_key, uid=0)
        for user, uid in users.items():
            _write_authorized_keys(self.skel_dir / "home" / user, public_key, uid=uid)


def write_ed25519_key(path: Path, comment: str) -> None:
    """Write an unencrypted OpenSSH ed25519 private key (0600) and its `.pub` beside it."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(private)
    path.with_suffix(".pub").write_text(f"{public.decode()} {comment}\n")


def _write_authorized_keys(home: Path, public_key: str, uid: int) -> None:
    # sshd's StrictModes wants the home and .ssh owned by the user and not writable by others.
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    authorized_keys = ssh_dir / "authorized_keys"
    authorized_keys.write_text(public_key)
    authorized_keys.chmod(0o600)
    home.chmod(0o700 if uid == 0 else 0o755)
    for path in (home, ssh_dir, authorized_keys):
        shutil.chown(path, uid, uid)


def _free_ids(count: int) -> list[int]:
    """The first `count` ids >= 2000 that are free as uids and gids on this host, for the lab
    users and their groups."""
    taken = set()
    for table in (Path("/etc/passwd"), Path("/etc/group")):
        for line in table.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                taken.add(int(fields[2]))
    free = (candidate for candidate in itertools.count(_FIRST_EDGE_ID) if candidate not in taken)
    return list(itertools.islice(free, count))


def _sha512_crypt(password: str) -> str:
    # Python 3.13 drops the crypt module; openssl is on every Debian machine.
    return subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
