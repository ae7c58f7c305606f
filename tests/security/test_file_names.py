"""A file name is data, never code: the shell builders, run by real dash and bash, and a lab run
with hostile copyFrom names."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kenornir import shell
from kenornir.config import ConfigError, load_config
from kenornir.notes import FileVersion, note_path
from kenornir.shell import Incoming
from tests.faults.conftest import STAGING, FaultLab

SHELLS = ("dash", "bash")
# What a hostile name is made of: every character a shell treats specially, and some that are
# not ASCII. Control characters, "/" and NUL cannot be in a name kenornir sends (see
# shell.unsendable_reason; the kernel takes no "/" or NUL in a name at all).
HOSTILE = [*" $`'\"\\;|&<>(){}[]*?~#!=%^,:-+.@", "é", "€", "ü", "\u00a0", "漢"]
names = st.text(alphabet=st.sampled_from([*HOSTILE, "a", "b", "x"]), min_size=1, max_size=24)
files = st.lists(
    st.tuples(names, st.binary(max_size=600)),
    min_size=1,
    max_size=4,
    unique_by=lambda item: item[0],
).filter(lambda items: all(name not in (".", "..") for name, _ in items))


def run_script(
    sh: str, script: str, cwd: Path, data: bytes = b"", path: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """script as the node runs it: inline with data on stdin, or alone on stdin (sh -s); with
    PATH path when given."""
    if data:
        argv, stdin = [sh, "-c", script], data
    else:
        argv, stdin = [sh, "-s"], shell.stdin_script(script)
    env = None if path is None else {"PATH": path}
    return subprocess.run(
        argv, input=stdin, cwd=cwd, env=env, capture_output=True, timeout=60, check=False
    )


def upload(
    sh: str, staging: Path, items: Sequence[tuple[str, bytes]], cwd: Path
) -> list[FileVersion]:
    """Receive items into staging with shell.receive, as one stream, the last one to its end."""
    versions = [
        FileVersion(str(staging / name), hashlib.sha256(content).hexdigest(), 0o755)
        for name, content in items
    ]
    incoming = [
        Incoming(version, len(content), len(content), last=index == len(items) - 1)
        for index, (version, (_, content)) in enumerate(zip(versions, items, strict=True))
    ]
    received = run_script(sh, shell.receive(incoming), cwd, b"".join(c for _, c in items) or b"")
    assert received.returncode == 0, received.stderr
    return versions


def everything_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.mark.parametrize("sh", SHELLS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=files)
@example(items=[("a$(id>PWNED).sh", b"echo hi\n"), ("with space", b"x")])
@example(items=[("`touch PWNED`", b""), ("'; touch PWNED; '", b"\x00\xff")])
@example(items=[("-rf", b"1"), ("--", b"2"), ("*", b"3")])
@example(items=[("x\\033[31mRED\\nkenornir: all fine\\c.sh", b"echo\n")])
def test_hostile_names_arrive_byte_exact_and_run_nothing(
    sh: str, items: list[tuple[str, bytes]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = tmp_path_factory.mktemp("node")
    cwd = sandbox / "home"
    cwd.mkdir()
    staging = sandbox / "stage" / "keadm"
    made = run_script(sh, shell.make_staging(str(staging)), cwd)
    assert made.returncode == 0, made.stderr

    versions = upload(sh, staging, items, cwd)

    for (name, content), version in zip(items, versions, strict=True):
        assert (staging / name).read_bytes() == content
        assert (staging / name).stat().st_mode & 0o777 == 0o755
        note = Path(note_path(version.remote)).read_text()
        assert note.split()[0] == version.sha256
    expected = {f"stage/keadm/{n}" for n, _ in items} | {
        f"stage/keadm/.{n}.kenornir" for n, _ in items
    }
    assert everything_under(sandbox) == {"home", "stage", "stage/keadm", *expected}

    # Each uploaded script runs as itself, checked first; nothing else ever ran.
    for (name, _), version in zip(items, versions, strict=True):
        (staging / name).write_text('printf "%s\\n" "ran $0"\n')
        refused = run_script(sh, shell.guarded(shell.hook_line(name, str(staging)), [version]), cwd)
        assert refused.returncode == shell.REFUSED_EXIT
        # Said as it is: no shell turns a backslash in the name into anything else.
        complaint = f"{staging / name} on the node differs from the uploaded one".encode()
        assert complaint in refused.stderr
    staged = upload(sh, staging, [(name, b'printf "%s\\n" "ran $0"\n') for name, _ in items], cwd)
    for (name, _), version in zip(items, staged, strict=True):
        ran = run_script(sh, shell.guarded(shell.hook_line(name, str(staging)), [version]), cwd)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.decode() == f"ran ./{name}\n"
    assert everything_under(cwd) == set()
    assert not any(path.name == "PWNED" for path in sandbox.rglob("*"))


@pytest.mark.parametrize("sh", SHELLS)
def test_planted_staging_dirs_are_refused_before_anything_is_made_in_them(
    sh: str, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "stage").symlink_to(target)
    staging = tmp_path / "stage" / "keadm"

    made = run_script(sh, shell.make_staging(str(staging)), tmp_path)

    assert made.returncode != 0
    assert b"is a symlink" in made.stderr
    assert list(target.iterdir()) == []
    verdict = run_script(sh, shell.staging_check(str(staging)), tmp_path)
    assert verdict.stdout.decode().startswith("unsafe: ")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("two\nlines.sh", "has a newline in it"),
        ("tab\there.sh", "has the control character '\\t' in it"),
        ("bell\x07.sh", "has the control character '\\x07' in it"),
        ("keadm.kenornir-part", "ends like kenornir's own files (.kenornir-part, .*.kenornir)"),
        (".keadm.kenornir", "ends like kenornir's own files (.kenornir-part, .*.kenornir)"),
    ],
)
def test_names_that_cannot_reach_the_node_intact_are_refused_at_validate(
    tmp_path: Path, name: str, why: str
) -> None:
    copy_from = tmp_path / "files"
    copy_from.mkdir()
    (copy_from / name).write_text("echo\n")
    config = tmp_path / "batch.yaml"
    config.write_text(
        "keadm: {keadmBinDir: /usr/local/bin}\n"
        "nodes:\n"
        f"  - {{nodeName: edge-1, keadmCmd: version, copyFrom: {copy_from},\n"
        "     ssh: {ip: 127.0.0.1, username: root}}\n"
    )

    with pytest.raises(ConfigError) as refused:
        load_config(config)

    assert refused.value.errors == [
        f"{config}: nodes[0].copyFrom: the file name {name!r} {why} (rename the file)"
    ]


@pytest.mark.parametrize("sh", SHELLS)
def test_a_file_without_its_note_is_hashed_whatever_its_name_with_or_without_openssl(
    sh: str, tmp_path: Path
) -> None:
    # A PATH of every program here but openssl: the hash falls back to sha256sum.
    without_openssl = tmp_path / "bin"
    without_openssl.mkdir()
    for directory in (Path("/usr/bin"), Path("/bin")):
        for program in directory.iterdir():
            link = without_openssl / program.name
            if program.name != "openssl" and not os.path.lexists(link):
                link.symlink_to(program)
    cwd = tmp_path / "home"
    cwd.mkdir()
    staging = tmp_path / "stage" / "keadm"
    assert run_script(sh, shell.make_staging(str(staging)), cwd).returncode == 0
    name = "back\\slash $x.sh"
    (version,) = upload(sh, staging, [(name, b"echo hashed\n")], cwd)
    Path(note_path(version.remote)).unlink()
    line = shell.guarded(shell.hook_line(name, str(staging)), [version])

    for path in (os.environ["PATH"], str(without_openssl)):
        ran = run_script(sh, line, cwd, path=path)
        assert (ran.returncode, ran.stdout) == (0, b"hashed\n"), ran.stderr


HOSTILE_FILES = {
    "a$(id>PWNED).sh": b'echo "copyFrom script ran"\n',
    "pre flight.sh": b"#!/bin/bash\necho preflight\n",
    'it\'s `touch PWNED`; "q".env': b"SITE=lab\n",
}


@pytest.mark.lab
def test_hostile_copy_from_names_upload_byte_exact_on_a_lab_node(
    fault_lab: FaultLab, tmp_path: Path
) -> None:
    copy_from = tmp_path / "hostile"
    copy_from.mkdir()
    for name, content in HOSTILE_FILES.items():
        (copy_from / name).write_bytes(content)
    node = "node-001"
    entry = fault_lab.entry(node, cmd="{{.cmd}} --token={{.token}} '--pre-run=./a$(id>PWNED).sh'")
    config = fault_lab.config([{**entry, "copyFrom": str(copy_from)}, *fault_lab.healthy()])

    run = fault_lab.run(config, "hostile-names")

    assert run.statuses() == {node: "ok", "node-002": "ok", "node-003": "ok"}, run.stderr
    for name, content in HOSTILE_FILES.items():
        on_node = fault_lab.lab.exec(node, ["cat", "--", f"{STAGING}/{name}"])
        assert on_node.stdout == content.decode()
    # The name reached keadm's --pre-run as the operator quoted it: it ran as a file, by name.
    assert "copyFrom script ran" in run.node_log(node)
    found = fault_lab.lab.exec(node, "find /root /home /tmp /var/lib/kubeedge -name PWNED")
    assert found.stdout == ""
    parts = fault_lab.lab.exec(node, f"ls -A {STAGING}").stdout.split("\n")
    assert not [name for name in parts if name.endswith(".kenornir-part")]
