"""The notes kenornir leaves beside the files it puts on a node, and what a probe reads back.

Beside every file it installs in a staging dir, kenornir writes a note (`.NAME.kenornir`) with
the content's sha256, the file's identity (inode, size, mtime, ctime) and mode. While the note
still matches the file, the file holds that content: writing to it, chmod or replacing it
changes its identity (its ctime at least, which no user can set back). So the next run knows
what the node holds without hashing anything, and keadm's guard (shell.guarded) knows the file
is the uploaded one. The node side (writing, reading, checking notes) is shell.NODE_FUNCTIONS;
this module is the controller side: where notes live, what they say, what a probe's answer means.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A note's name: "." + the file's name + this. Uploads may not use such names.
NOTE_SUFFIX = ".kenornir"
# How part files end (part_path). Uploads may not use such names either.
PART_SUFFIX = ".kenornir-part"
# Ends the notes in the held-files listing; the files' identities follow.
NOTES_END = "__kenornir_notes_end__"
# What the userland line of a probe says of a node whose `head -c` is exact.
EXACT_HEAD = "exact-head"


@dataclass(frozen=True)
class FileVersion:
    """A file as the node should hold it: where, with which content and mode."""

    remote: str
    sha256: str
    mode: int


def note_path(remote: str) -> str:
    """Where kenornir notes what it wrote to `remote`: `<sha256> <identity> <mode>`."""
    return posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}{NOTE_SUFFIX}")


def part_path(remote: str, sha256: str, form: str = "") -> str:
    """Where the bytes of an upload to remote gather until all have arrived: named by the
    content (and the packed form sent, "zst" or "tgz"; "" for the file as it is), so a cut
    upload resumes into the part of the same content, on the next attempt or the next run, by
    either transfer path."""
    packed = f".{form}" if form else ""
    return f"{remote}.{sha256[:16]}{packed}{PART_SUFFIX}"


def note_line(sha256: str, identity: str, mode: int) -> str:
    """What a note says of its file (kn_install writes it): the content's sha256, the file's
    identity (kn_identity) and mode.

    While a file's note still matches it, the file holds that content: writing to the file,
    chmod or replacing it changes its identity (the ctime at least, which no user can set back).
    So nothing needs hashing to know it.
    """
    return f"{sha256} {identity} {mode:o}"


@dataclass(frozen=True)
class RemoteState:
    """What the node already holds (see note_line), whether it has a working zstd, and
    whether its `head -c` takes exactly that many bytes off a pipe (the stream relies on it)."""

    unchanged: frozenset[FileVersion]
    has_zstd: bool
    exact_head: bool
    held_parts: Mapping[str, int] = field(default_factory=dict)  # part_path -> bytes in it


def parse_remote_state(
    versions: Sequence[FileVersion], lines: Sequence[str], parts: Sequence[str] = ()
) -> RemoteState:
    """What shell.remote_state printed: a probe may ask about several versions of one path
    (keadm for each arch), and how much of each of parts (part_path) a cut upload left."""
    userland, *rest = lines
    end = rest.index(NOTES_END)
    notes: dict[str, str] = {}
    for line in rest[:end]:
        for version in versions:
            prefix = note_path(version.remote) + ":"
            if line.startswith(prefix):
                notes.setdefault(version.remote, line[len(prefix) :])
    identities = dict(line.rpartition("|")[::2] for line in rest[end + 1 :])
    unchanged = {
        v
        for v in versions
        if v.remote in identities
        and notes.get(v.remote) == note_line(v.sha256, identities[v.remote], v.mode)
    }
    held_parts = {part: int(identities[part].split()[1]) for part in parts if part in identities}
    decoder, _, head = userland.partition(" ")
    return RemoteState(frozenset(unchanged), decoder == "zstd", head == EXACT_HEAD, held_parts)
