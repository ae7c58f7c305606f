"""Every shell line kenornir runs on a node, built in this one module from argv lists.

Paths, names, digests and sizes reach the node only as words quoted by `shlex.join`; the logic
that handles them is NODE_FUNCTIONS, a fixed set of shell functions that only ever expand their
arguments quoted ("$1", "$@"). So a file name is data, never code, whatever it holds, and no
quoting is ever nested by hand. The one piece of shell text that is not built here is the
operator's own keadmCmd, which upstream runs through a shell too (`./keadm <keadmCmd>`).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kenornir.notes import (
    EXACT_HEAD,
    NOTE_SUFFIX,
    NOTES_END,
    PART_SUFFIX,
    FileVersion,
    note_path,
    part_path,
)

# The first stdout line of every command carries the remote process group id after a mark
# (this, a nonce and "="), so an interrupted or timed-out command can be killed on the node,
# not just abandoned.
PGID_MARK = "__kenornir_pgid_"
KILL_GRACE_SECONDS = 5
# Exit status of a guard that refused to run something: a dir or file failed its check.
REFUSED_EXIT = 197
# Exit status of an upload whose bytes on the node do not have the sha256 they should.
MISMATCH_EXIT = 196
# How the node functions begin the stderr lines that say why they refused.
OWN_COMPLAINT = "kenornir: "
# Separates the answers of a probe's questions in its output.
SECTION_MARK = "__kenornir_section__"

# Functions every script starts with. Each says in a comment what it takes; none ever puts an
# argument anywhere but inside double quotes, as a `case` subject or as a printf argument (never
# in a format, and never to echo, which dash lets expand backslashes).
NODE_FUNCTIONS = r"""
umask 022
# What identifies a file's inode and content version: any write, chmod or replacement changes
# the ctime, which no user can set back.
kn_identity_format='%i %s %.9Y %.9Z'
kn_identity() { stat -c "$kn_identity_format" -- "$1" 2>/dev/null; }
# kn_unsafe_top DIR: says why DIR, the shared dir the staging dirs live in (/tmp), would let
# another user move them; nothing when it is root's and, where others may write, sticky.
kn_unsafe_top() {
    kn_info=$(stat -L -c '%u %A' -- "$1" 2>/dev/null) || { printf '%s is missing\n' "$1"; return; }
    case $kn_info in
    "0 d"????????[tT]) ;;
    "0 d"????[!w]??[!w]*) ;;
    "0 d"*) printf '%s is writable by others, not sticky; fix it: chmod +t %s\n' "$1" "$1" ;;
    *) printf '%s is not a directory that root owns\n' "$1" ;;
    esac
}
# kn_unsafe_dir UID DIR: says why DIR is no place for what user UID runs; nothing when it is:
# a real directory owned by UID that no one else may write to. (%A, not octal arithmetic:
# mksh reads 0755 as decimal.)
kn_unsafe_dir() {
    kn_info=$(stat -c '%u %A' -- "$2" 2>/dev/null) || { printf '%s is missing\n' "$2"; return; }
    kn_owner=${kn_info%% *} kn_mode=${kn_info#* }
    case $kn_mode in
    l*) printf '%s is a symlink; refusing to stage files through it\n' "$2" ;;
    d*)
        if [ "$kn_owner" != "$1" ]; then
            printf '%s is owned by uid %s, not uid %s that runs keadm; remove it\n' \
                "$2" "$kn_owner" "$1"
            return
        fi
        case $kn_mode in
        ?????w* | ????????w*) printf '%s is writable by group or others; remove it\n' "$2" ;;
        esac ;;
    *) printf '%s is not a directory; remove it\n' "$2" ;;
    esac
}
# kn_staging UID TOP DIR...: "ok" when TOP lets no one move what is in it and every DIR is safe
# for UID (empty: this user), "missing" from the first DIR that does not exist, else
# "unsafe: " and why.
kn_staging() {
    kn_uid=${1:-$(id -u)}
    kn_why=$(kn_unsafe_top "$2")
    [ -z "$kn_why" ] || { printf 'unsafe: %s\n' "$kn_why"; return; }
    shift 2
    for kn_dir do
        kn_why=$(kn_unsafe_dir "$kn_uid" "$kn_dir")
        case $kn_why in
        "") ;;
        "$kn_dir is missing") echo missing; return ;;
        *) printf 'unsafe: %s\n' "$kn_why"; return ;;
        esac
    done
    echo ok
}
# kn_make_staging TOP DIR...: creates each missing DIR (0755), parent first, each checked before
# anything is made in it; mkdir without -p never follows a planted link.
kn_make_staging() {
    kn_why=$(kn_unsafe_top "$1")
    [ -z "$kn_why" ] || { printf '%s\n' "$kn_why" >&2; return 1; }
    shift
    for kn_dir do
        [ -e "$kn_dir" ] || [ -L "$kn_dir" ] || mkdir -m 0755 -- "$kn_dir" || return 1
        kn_why=$(kn_unsafe_dir "$(id -u)" "$kn_dir")
        [ -z "$kn_why" ] || { printf '%s\n' "$kn_why" >&2; return 1; }
    done
}
# kn_trusted_staging TOP DIR...: the dirs are safe for this user, else say why and refuse.
kn_trusted_staging() {
    kn_verdict=$(kn_staging "" "$@")
    [ "$kn_verdict" = ok ] && return
    printf '@OWN_COMPLAINT@%s\n' "${kn_verdict#unsafe: }" >&2
    exit @REFUSED_EXIT@
}
# kn_read BYTES: the next BYTES bytes of stdin ("rest": all that is left) to stdout.
kn_read() { if [ "$1" = rest ]; then cat; else head -c "$1"; fi; }
# kn_take BYTES SENT OFFSET TOTAL PART [FILTER...]: the next BYTES bytes of stdin (kn_read)
# complete SENT, the part file of the form sent, which holds its first OFFSET bytes from a cut
# upload already (0: none) and must end up with TOTAL bytes. With FILTER (an unpacker) the whole
# SENT then goes through it into PART; without one SENT is the file's own part. (Written first
# and unpacked after, rather than teed into the unpacker as it arrives: on a busy node the copy
# through tee cost more than the overlap gained; the unpacking of a whole SENT is quick.)
# A SENT cut short by the end of the stream (a lost connection) stays for the next try; one
# whose writing failed (a full disk) goes; one that arrived whole but does not unpack goes too,
# and then kn_take exits @MISMATCH_EXIT@.
kn_take() {
    kn_bytes=$1 kn_sent=$2 kn_offset=$3 kn_total=$4 kn_part=$5
    shift 5
    if [ "$kn_offset" = 0 ]; then kn_read "$kn_bytes" >"$kn_sent"
    else kn_read "$kn_bytes" >>"$kn_sent"
    fi
    kn_got=$(stat -c %s -- "$kn_sent" 2>/dev/null) || kn_got=0
    if [ "$kn_got" = "$kn_total" ]; then
        { [ "$#" -eq 0 ] || "$@" <"$kn_sent" >"$kn_part"; } && return
        rm -f -- "$kn_part"
        # It unpacks when nothing is written: writing it out failed (a full disk).
        "$@" <"$kn_sent" >/dev/null 2>&1 && kn_unpacks=1 || kn_unpacks=
        rm -f -- "$kn_sent"
        [ -z "$kn_unpacks" ] || return 1
        printf '@OWN_COMPLAINT@%s: what arrived does not unpack\n' "$kn_sent" >&2
        return @MISMATCH_EXIT@
    fi
    [ "$(head -c 1 | wc -c)" -eq 0 ] || rm -f -- "$kn_sent"
    printf '%s: %s of %s bytes arrived\n' "$kn_sent" "$kn_got" "$kn_total" >&2
    return 1
}
# kn_sum_is FILE SHA256 NAME: FILE has that content; else it goes, the complaint names NAME and
# kn_sum_is exits @MISMATCH_EXIT@.
kn_sum_is() {
    kn_sum=$(kn_sha256 <"$1")
    [ "$kn_sum" = "$2" ] && return
    rm -f -- "$1"
    printf '@OWN_COMPLAINT@%s: what arrived has sha256 %s, not %s\n' "$3" "$kn_sum" "$2" >&2
    return @MISMATCH_EXIT@
}
# kn_arrived PART SIZE NAME: PART holds exactly SIZE bytes, else say how many of NAME arrived.
kn_arrived() {
    kn_size=$(stat -c %s -- "$1") && [ "$kn_size" = "$2" ] && return
    printf '%s: %s of %s bytes arrived\n' "$3" "${kn_size:-0}" "$2" >&2
    return 1
}
# kn_install PART FINAL MODE SHA256 NOTE: PART becomes FINAL with MODE; NOTE (empty: none)
# records what it is.
kn_install() {
    chmod "$3" -- "$1" && mv -f -- "$1" "$2" &&
        { [ -z "$5" ] || printf '%s %s %s\n' "$4" "$(kn_identity "$2")" "$3" >"$5"; }
}
# kn_notes NOTE...: every note's line, as NOTE:line.
kn_notes() { [ "$#" -eq 0 ] || grep -H '' -- "$@" 2>/dev/null; true; }
# kn_identities FILE...: every existing FILE's identity, as FILE|identity.
kn_identities() { [ "$#" -eq 0 ] || stat -c "%n|$kn_identity_format" -- "$@" 2>/dev/null; true; }
# kn_verified FILE NOTE SHA256 MODE: FILE holds the content kenornir uploaded: its note still
# matches it (nothing wrote, chmod-ed or replaced it since), or else its sha256 does.
kn_verified() {
    kn_note=
    { read -r kn_note <"$2"; } 2>/dev/null
    [ "$kn_note" = "$3 $(kn_identity "$1") $4" ] && return
    [ "$(kn_sha256 <"$1")" = "$3" ]
}
# kn_require FILE NOTE SHA256 MODE: kn_verified, else refuse to run anything.
kn_require() {
    kn_verified "$@" && return
    printf '@OWN_COMPLAINT@%s on the node differs from the uploaded one (sha256 mismatch)\n' \
        "$1" >&2
    exit @REFUSED_EXIT@
}
# kn_head_exact: whether `head -c` takes exactly that many bytes off a pipe, which the upload
# stream relies on (BusyBox's reads ahead through stdio and swallows the next file's bytes).
kn_head_exact() { [ "$(printf abcd | { head -c 2 >/dev/null; cat; })" = cd ]; }
# kn_sha256: the sha256 of stdin, hex. openssl hashes about 3x faster than coreutils (SHA
# extensions); sha256sum without it. Both read stdin: sha256sum escapes a name with a
# backslash in its output.
kn_sha256() { { openssl dgst -sha256 -r || sha256sum; } 2>/dev/null | cut -d' ' -f1; }
# kn_holds FILE SIZE MODE SHA256: prints "same" when FILE is a regular file of SIZE bytes, octal
# MODE and that content (hashed only when size and mode match).
kn_holds() {
    [ -f "$1" ] && [ ! -L "$1" ] || return 0
    [ "$(stat -c '%s %a' -- "$1" 2>/dev/null)" = "$2 $3" ] || return 0
    [ "$(kn_sha256 <"$1")" != "$4" ] || echo same
}
# kn_adopt SOURCE FINAL MODE SHA256 NOTE [FILTER...]: what arrived in SOURCE becomes FINAL with
# MODE once its sha256 is SHA256; NOTE (empty: none) records it. SOURCE is FINAL's part file
# (part_path), or else (a packed part, or one the login user uploaded elsewhere on sudo nodes) it
# is copied, through FILTER (an unpacker) when given, into a new file beside FINAL first, and the
# copy is what is checked and installed: nothing the login user does to SOURCE afterwards
# counts. What does not unpack or does not match removes what arrived and exits @MISMATCH_EXIT@.
kn_adopt() {
    kn_source=$1 kn_final=$2 kn_mode=$3 kn_sha=$4 kn_note=$5
    shift 5
    kn_part=$kn_source
    case $#:$kn_source in
    "0:$kn_final".????????????????@PART_SUFFIX@) ;;
    *)
        [ "$#" -gt 0 ] || set -- cat
        kn_part=$(mktemp -- "$kn_final.XXXXXXXX") || return 1
        if ! "$@" <"$kn_source" >"$kn_part"; then
            rm -f -- "$kn_part" "$kn_source"
            printf '@OWN_COMPLAINT@%s: what arrived does not unpack\n' "$kn_final" >&2
            return @MISMATCH_EXIT@
        fi ;;
    esac
    if ! kn_sum_is "$kn_part" "$kn_sha" "$kn_final"; then
        rm -f -- "$kn_source"
        return @MISMATCH_EXIT@
    fi
    kn_install "$kn_part" "$kn_final" "$kn_mode" "$kn_sha" "$kn_note" && rm -f -- "$kn_source"
}
# kn_stop PGID: stop a process group, killing what is left of it after a grace period.
# (`kill -s SIG -- -PGID`: dash takes no other form for a group.)
kn_stop() {
    kill -s TERM -- "-$1" 2>/dev/null
    sleep 2
    kill -s KILL -- "-$1" 2>/dev/null
    true
}
"""
for _name, _value in {
    "@REFUSED_EXIT@": str(REFUSED_EXIT),
    "@MISMATCH_EXIT@": str(MISMATCH_EXIT),
    "@OWN_COMPLAINT@": OWN_COMPLAINT,
    "@PART_SUFFIX@": PART_SUFFIX,
}.items():
    NODE_FUNCTIONS = NODE_FUNCTIONS.replace(_name, _value)


class UnsendableWord(ValueError):
    """A word that cannot reach the node intact (a NUL, a control character, invalid UTF-8)."""


def unsendable_reason(word: str) -> str | None:
    """Why word cannot be sent as one shell word and read back line by line, or None.

    Control characters are refused: a newline would split the line-based answers of the
    probe, and no file name that holds one is meant well. Text that is not UTF-8 (Python keeps
    such file names as surrogates) cannot be encoded for the node.
    """
    for character in word:
        if character == "\n":
            return "has a newline in it"
        if ord(character) < 0x20 or ord(character) == 0x7F:
            return f"has the control character {character!r} in it"
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def upload_name_problem(name: str) -> str | None:
    """Why a file cannot be uploaded under this name, or None: unsendable, or a name kenornir
    keeps for its own files beside the uploads (a part file or a note could be overwritten by
    an upload so named, and vouch for the wrong content)."""
    if name.endswith(PART_SUFFIX) or (name.startswith(".") and name.endswith(NOTE_SUFFIX)):
        return f"ends like kenornir's own files ({PART_SUFFIX}, .*{NOTE_SUFFIX})"
    return unsendable_reason(name)


def words(*argv: str) -> str:
    """One shell command line that runs argv exactly: every word quoted by shlex.join.

    Raises:
        UnsendableWord: a word that cannot be sent (see unsendable_reason).
    """
    for word in argv:
        reason = unsendable_reason(word)
        if reason is not None:
            raise UnsendableWord(f"{word!r} {reason}")
    return shlex.join(argv)


# What is sent: the functions without their comments.
_SENT_FUNCTIONS = "\n".join(
    line for line in NODE_FUNCTIONS.splitlines() if line and not line.lstrip().startswith("#")
)


def script(*lines: str) -> str:
    """A whole script: NODE_FUNCTIONS, then lines."""
    return _SENT_FUNCTIONS + "\n" + "\n".join(lines) + "\n"


def _absolute(path: str) -> str:
    # Every path handed to NODE_FUNCTIONS starts with "/", so none can pass for an option.
    if not posixpath.isabs(path):
        raise UnsendableWord(f"{path!r} is not an absolute path")
    return path


# --- launching ------------------------------------------------------------------------------


def launch_line(
    timeout: float,
    *,
    mark: str,
    sudo: bool,
    password_prompt: str | None,
    inline_script: str | None,
) -> str:
    """The exec request: print mark and the process group, then run a shell under coreutils
    timeout.

    The shell reads its script on stdin (`sh -s`, see stdin_script) unless inline_script is
    given, whose text then travels in the argv: only for scripts that hold no secret and whose
    stdin carries data. `timeout` makes itself a process group leader, so its pid is the group
    to kill, and the node itself stops a runaway command when the controller is gone. With sudo,
    sudo asks for the password with password_prompt (None: never ask, `sudo -n`).
    """
    seconds = str(max(1, int(timeout)))
    shell = ["/bin/sh", "-c", inline_script] if inline_script is not None else ["/bin/sh", "-s"]
    # shlex.join, not words: the script is kenornir's own text, its data words quoted already.
    inner = f"echo {shlex.quote(mark)}$$; exec " + shlex.join(
        ["timeout", "-k", str(KILL_GRACE_SECONDS), seconds, *shell]
    )
    if not sudo:
        return inner
    asks = ["-S", "-p", password_prompt] if password_prompt is not None else ["-n"]
    return shlex.join(["sudo", *asks, "--", "/bin/sh", "-c", inner])


def stdin_script(body: str) -> bytes:
    """A script as `sh -s` reads it on stdin: one group, parsed whole before any of it runs,
    whose commands read /dev/null, so nothing they start can read the rest of the script."""
    return ("{\n" + body + "\n} </dev/null\n").encode()


def stop_group(pgid: int) -> str:
    return script(words("kn_stop", str(pgid)))


# --- staging dir ----------------------------------------------------------------------------


def staging_chain(path: str) -> list[str]:
    """Each dir of path below its top one (/tmp: root's, sticky and world-writable)."""
    parts = _absolute(path).strip("/").split("/")
    return ["/" + "/".join(parts[:n]) for n in range(2, len(parts) + 1)]


def _staging_dirs(path: str) -> list[str]:
    """The top dir of path, then staging_chain(path): what kn_staging and kn_make_staging take."""
    return ["/" + _absolute(path).strip("/").split("/")[0], *staging_chain(path)]


def staging_check(path: str, owner_uid: str = "") -> str:
    """The script printing `ok`, `missing` or `unsafe: why` for the staging dirs (kn_staging),
    as judged for the user owner_uid (empty: the user running it)."""
    return script(_staging_verdict(path, owner_uid))


def _staging_verdict(path: str, owner_uid: str) -> str:
    return words("kn_staging", owner_uid, *_staging_dirs(path))


def make_staging(path: str) -> str:
    return script(words("kn_make_staging", *_staging_dirs(path)))


def _trusted_staging(paths: Iterable[str]) -> list[str]:
    """Lines that refuse to go on unless the dirs holding paths are safe for this user."""
    directories = dict.fromkeys(posixpath.dirname(_absolute(path)) for path in paths)
    return [words("kn_trusted_staging", *_staging_dirs(d)) for d in directories]


def free_space(directory: str) -> str:
    return script(words("df", "-Pk", "--", directory) + " | tail -n 1")


# --- files ----------------------------------------------------------------------------------


def _held_files(paths: Sequence[str], parts: Sequence[str]) -> str:
    """Lines printing every note of paths, NOTES_END, then the identity of every file of paths
    and parts (part_path) that exists: three processes however many files (see
    notes.parse_remote_state)."""
    unique = list(dict.fromkeys(_absolute(path) for path in paths))
    notes = words("kn_notes", *(note_path(path) for path in unique))
    identities = words("kn_identities", *unique, *(_absolute(part) for part in parts))
    return f"{notes}; {words('echo', NOTES_END)}; {identities}"


# One line: whether zstd works (it must run, not just be on the PATH: a broken one falls back to
# the tarball), then whether `head -c` is exact (kn_head_exact).
_USERLAND = (
    "{ zstd -V >/dev/null 2>&1 && printf zstd || printf none; }; "
    f"kn_head_exact && echo ' {EXACT_HEAD}' || echo ' inexact-head'"
)


def remote_state(paths: Sequence[str], parts: Sequence[str] = ()) -> str:
    """The script whose output says what the node's userland can do (_USERLAND), then what
    _held_files prints."""
    return script(_USERLAND, _held_files(paths, parts))


def probe(
    staging: str, owner_uid: str, paths: Sequence[str], joined_mark: str, parts: Sequence[str] = ()
) -> str:
    """`uname -m`, staging_check, remote_state and whether joined_mark exists (`joined` or
    `fresh`) in one script, their answers separated by SECTION_MARK lines."""
    section = words("echo", SECTION_MARK)
    verdict = _staging_verdict(staging, owner_uid)
    joined = words("test", "-e", _absolute(joined_mark)) + " && echo joined || echo fresh"
    held = (_USERLAND, _held_files(paths, parts))
    return script("uname -m", section, verdict, section, *held, section, joined)


@dataclass(frozen=True)
class Incoming:
    """One file of an upload stream as the node receives it: the form sent (the file, or packed)
    gathers in its part file, from where a cut upload left it (offset)."""

    version: FileVersion
    size: int  # what it must measure once unpacked
    sent_size: int  # what the form sent measures
    last: bool  # the last file of the stream takes the rest of it
    unpack: tuple[str, ...] = ()  # the filter's argv, e.g. ("zstd", "-dcq")
    form: str = ""  # the packed form sent ("zst", "tgz"); "" for the file itself
    offset: int = 0  # bytes of the form sent that the node holds already

    @property
    def sent_part(self) -> str:
        """Where the bytes sent gather: the final path is never partial."""
        return part_path(self.version.remote, self.version.sha256, self.form)

    @property
    def part(self) -> str:
        """Where the file itself gathers: the sent part, or what it unpacks into."""
        return part_path(self.version.remote, self.version.sha256)


def receive(files: Sequence[Incoming]) -> str:
    """The script that takes every file off stdin, one after the other, and puts it in place.

    The staging dirs are checked first (as whoever writes there). Each file's bytes go to its
    part file (kn_take), after those a cut upload left there; a packed file is unpacked once it
    is whole. Every file is checked for its full size, a resumed file for its sha256 too (a
    packed one is by the checksum its form carries); only then are modes set, files renamed
    over their final paths and notes written. Unpacked parts never outlive the script; the
    sent parts of a cut upload stay for the next try.
    """
    unpacked = [_absolute(item.part) for item in files if item.unpack]
    lines = [
        *([words("trap", words("rm", "-f", "--", *unpacked), "EXIT")] if unpacked else []),
        words("trap", "exit 1", "HUP", "INT", "TERM", "PIPE"),
        *_trusted_staging(item.version.remote for item in files),
    ]
    for item in files:
        version = item.version
        taken = "rest" if item.last else str(item.sent_size - item.offset)
        sizes = (str(item.offset), str(item.sent_size))
        take = words("kn_take", taken, _absolute(item.sent_part), *sizes, item.part, *item.unpack)
        lines.append(take + " || exit")
        if item.unpack:
            arrived = words("kn_arrived", item.part, str(item.size), version.remote)
            lines.append(arrived + " || exit 1")
        elif item.offset:
            lines.append(words("kn_sum_is", item.part, version.sha256, version.remote) + " || exit")
    for item in files:
        version = item.version
        install = words(
            "kn_install",
            item.part,
            version.remote,
            f"{version.mode:o}",
            version.sha256,
            note_path(version.remote),
        )
        done = f" && {words('rm', '-f', '--', item.sent_part)}" if item.unpack else ""
        lines.append(install + done + " || exit 1")
    return script(*lines)


def holds(remote: str, size: int, mode: int, sha256: str) -> str:
    """The script printing "same" when remote has that size, mode and content (kn_holds)."""
    return script(words("kn_holds", _absolute(remote), str(size), f"{mode:o}", sha256))


def adopt(
    source: str,
    remote: str,
    mode: int,
    sha256: str,
    *,
    staged: bool,
    make_dirs: bool,
    unpack: Sequence[str] = (),
) -> str:
    """The script that installs what an SFTP upload put in source as remote (kn_adopt).

    staged: remote is in a staging dir: its dirs are checked as the stream's are, and a note
    records it for the next probe. make_dirs: create remote's dir first (as whoever runs this).
    unpack: the argv of the filter from source (packed) to the file.
    """
    directory = posixpath.dirname(_absolute(remote))
    lines = [words("mkdir", "-p", "--", directory) + " || exit 1"] if make_dirs else []
    lines += _trusted_staging([remote]) if staged else []
    note = note_path(remote) if staged else ""
    mode_text = f"{mode:o}"
    lines.append(words("kn_adopt", _absolute(source), remote, mode_text, sha256, note, *unpack))
    return script(*lines)


# --- running keadm and hooks ----------------------------------------------------------------


def is_reset(keadm_cmd: str) -> bool:
    """Whether keadm will ask for confirmation (`reset`), which upstream answers with `yes |`."""
    words_ = keadm_cmd.split()
    return bool(words_) and words_[0] == "reset"


def keadm_line(keadm_cmd: str, work_dir: str) -> str:
    """The line that runs keadm, upstream's form: `cd DIR && ./keadm CMD`.

    keadm_cmd is the operator's keadmCmd, shell text by design as upstream's; every other word
    is quoted.
    """
    runner = "yes | ./keadm" if is_reset(keadm_cmd) else "./keadm"
    return f"{words('cd', work_dir)} && {runner} {keadm_cmd}"


def hook_line(script_name: str, work_dir: str) -> str:
    """The line that runs an uploaded preRun/postRun script where it was uploaded."""
    return f"{words('cd', work_dir)} && {words('/bin/bash', './' + script_name)}"


def guarded(line: str, verified: Sequence[FileVersion]) -> str:
    """A script that runs line only once every file in verified is what kenornir uploaded and
    the dirs that hold them are safe, checked by the same user and shell right before line
    runs: as those dirs are writable by no one else, nothing can change the files between the
    check and the run. Refused, it exits REFUSED_EXIT saying why (OWN_COMPLAINT)."""
    checks = _trusted_staging(version.remote for version in verified)
    checks += [
        words(
            "kn_require",
            version.remote,
            note_path(version.remote),
            version.sha256,
            f"{version.mode:o}",
        )
        for version in verified
    ]
    return script(*checks, line)
