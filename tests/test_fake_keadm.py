"""The fake keadm: join records, pre-run/post-run like real keadm, reset, failure knobs."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import JoinRecord, LabFactory, parse_join_records
from tests.lab.packages import FAKE_KEADM_SCRIPT

COMMAND_TIMEOUT = 60


class FakeKeadm:
    """The fake keadm script installed as ./keadm in a working dir, as batch stages it."""

    def __init__(self, root: Path) -> None:
        self.workdir = root / "kubeedge" / "keadm"
        self.workdir.mkdir(parents=True)
        shutil.copy2(FAKE_KEADM_SCRIPT, self.workdir / "keadm")
        self.record_dir = root / "var-lib-kubeedge"
        self.etc_dir = root / "etc-kubeedge"
        self.environment = {
            **os.environ,
            "KEADM_FAKE_RECORD_DIR": str(self.record_dir),
            "KEADM_FAKE_ETC_DIR": str(self.etc_dir),
        }

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["./keadm", *args],
            cwd=self.workdir,
            env=self.environment,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT,
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ./keadm in a session of its own (its pid is its process group's id)."""
        return subprocess.Popen(
            ["./keadm", *args],
            cwd=self.workdir,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def shell(self, command_line: str) -> subprocess.CompletedProcess[str]:
        """Run a shell command line in the working dir, e.g. `yes | ./keadm reset`."""
        return subprocess.run(
            ["/bin/bash", "-c", command_line],
            cwd=self.workdir,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=COMMAND_TIMEOUT,
        )

    def script(self, name: str, body: str) -> str:
        """Write a hook script into the working dir; returns its relative path ./name."""
        (self.workdir / name).write_text(body)
        return f"./{name}"

    def records(self) -> list[JoinRecord]:
        log = self.record_dir / "keadm-join.log"
        return parse_join_records(log.read_text()) if log.exists() else []


@pytest.fixture
def keadm(tmp_path: Path) -> FakeKeadm:
    return FakeKeadm(tmp_path)


def running_child(process: subprocess.Popen[bytes], argv: tuple[str, ...]) -> int:
    """The pid of the process's child that runs argv, as soon as it runs."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    wanted = [part.encode() for part in argv]
    deadline = time.monotonic() + COMMAND_TIMEOUT  # only so that a failure does not hang
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a child that just exited
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == wanted:
                    return int(pid)
        time.sleep(0.01)
    raise AssertionError(f"keadm (exit code {process.poll()}) never ran {argv} as its child")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the process and its children (its session's group) if it still runs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=COMMAND_TIMEOUT)


def test_join_records_full_argv_times_and_working_dir(keadm: FakeKeadm) -> None:
    args = ("join", "--cloudcore-ipport=127.0.0.1:10000", "--edgenode-name=n1", "--token=t0k")

    result = keadm.run(*args)

    assert result.returncode == 0, result.stderr
    assert "KubeEdge edgecore is running" in result.stdout
    [record] = keadm.records()
    assert record.argv == args
    assert record.outcome == "ok"
    assert record.cwd == str(keadm.workdir)
    assert record.start <= record.end


def test_join_appends_one_record_per_invocation(keadm: FakeKeadm) -> None:
    keadm.run("join", "--token=first")
    keadm.run("join", "--token=second")

    assert [(record.argv, record.outcome) for record in keadm.records()] == [
        (("join", "--token=first"), "ok"),
        (("join", "--token=second"), "not-clean"),
    ]


def test_a_joined_node_is_refused_like_real_keadm_until_reset(keadm: FakeKeadm) -> None:
    edgecore = keadm.etc_dir / "config" / "edgecore.yaml"
    assert keadm.run("join", "--token=t").returncode == 0
    assert "kind: EdgeCore" in edgecore.read_text()

    again = keadm.run("join", "--token=t")

    assert again.returncode == 1
    assert "management directory is not clean" in again.stderr
    assert "1. Check KubeEdge edgecore process status" in again.stdout
    assert "3. Create" not in again.stdout

    reset = keadm.run("reset", "edge", "--force")  # no question asked, nothing on stdin

    assert reset.returncode == 0, reset.stderr
    assert not edgecore.exists()
    assert keadm.run("join", "--token=t").returncode == 0
    assert [record.outcome for record in keadm.records()] == ["ok"]


def test_fake_sleep_keeps_join_running_in_a_sleep_that_long(keadm: FakeKeadm) -> None:
    """Shown without a clock: the record's own `end - start >= S` would compare two readings of
    the wall clock, which a clock step between them breaks. Instead: while join runs it waits on
    a `sleep S` child and has recorded nothing; once that sleep ends (stopped early here, so the
    test need not wait S), join goes on and records its ok."""
    process = keadm.start("join", "--token=t", "--fake-sleep=300")
    try:
        nap = running_child(process, ("sleep", "300"))
        assert keadm.records() == []
        os.kill(nap, signal.SIGTERM)
        assert process.wait(timeout=COMMAND_TIMEOUT) == 0
    finally:
        stop_group(process)

    assert [record.outcome for record in keadm.records()] == ["ok"]


@pytest.mark.parametrize("form", ["--pre-run={}", "--pre-run {}"])
def test_pre_run_runs_first_in_the_working_dir(keadm: FakeKeadm, form: str) -> None:
    pre_run = keadm.script("pre.sh", 'echo "PRE-RAN in $PWD"\n')

    result = keadm.run("join", "--token=t", *shlex.split(form.format(pre_run)))

    assert result.returncode == 0, result.stderr
    assert f"PRE-RAN in {keadm.workdir}" in result.stdout
    assert result.stdout.index("PRE-RAN") < result.stdout.index("1. Check KubeEdge")


def test_failing_pre_run_aborts_keadm(keadm: FakeKeadm) -> None:
    pre_run = keadm.script("pre.sh", "echo checking; exit 3\n")
    post_run = keadm.script("post.sh", "touch post-ran\n")

    result = keadm.run("join", "--token=t", f"--pre-run={pre_run}", f"--post-run={post_run}")

    assert result.returncode != 0
    assert "pre-run" in result.stderr
    assert "edgecore is running" not in result.stdout
    assert not (keadm.workdir / "post-ran").exists()
    assert [record.outcome for record in keadm.records()] == ["pre-run-failed"]


def test_post_run_runs_after_the_join(keadm: FakeKeadm) -> None:
    post_run = keadm.script("post.sh", 'echo "POST-RAN in $PWD"\n')

    result = keadm.run("join", "--token=t", f"--post-run={post_run}")

    assert result.returncode == 0, result.stderr
    assert f"POST-RAN in {keadm.workdir}" in result.stdout
    assert result.stdout.index("edgecore is running") < result.stdout.index("POST-RAN")


def test_failing_post_run_is_only_reported(keadm: FakeKeadm) -> None:
    post_run = keadm.script("post.sh", "exit 4\n")

    result = keadm.run("join", "--token=t", f"--post-run={post_run}")

    assert result.returncode == 0
    assert "Failed to execute post-run script" in result.stdout
    assert [record.outcome for record in keadm.records()] == ["ok"]


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_reset_without_yes_aborts_and_keeps_the_record(keadm: FakeKeadm, answer: str) -> None:
    keadm.run("join", "--token=t")

    result = keadm.run("reset", stdin=answer)

    assert result.returncode == 1
    assert "[y/N]" in result.stdout
    assert "aborted" in result.stderr
    assert len(keadm.records()) == 1


def test_reset_piped_yes_clears_the_record(keadm: FakeKeadm) -> None:
    keadm.run("join", "--token=t")

    result = keadm.shell("yes | ./keadm reset edge")

    assert result.returncode == 0, result.stderr
    assert "[y/N]" in result.stdout
    assert keadm.records() == []


def test_invalid_token_fails_like_keadm(keadm: FakeKeadm) -> None:
    result = keadm.run("join", "--cloudcore-ipport=127.0.0.1:10000", "--token=invalid")

    assert result.returncode == 1
    assert result.stderr.startswith("Error: failed to get CA certificate")
    assert "edgecore is running" not in result.stdout
    assert [record.outcome for record in keadm.records()] == ["invalid-token"]


def test_stderr_flood_by_lines(keadm: FakeKeadm) -> None:
    result = keadm.run("join", "--token=t", "--fake-stderr-lines=20000")

    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 20000
    assert lines[-1].endswith("flood line 20000")


def test_stderr_flood_by_size(keadm: FakeKeadm) -> None:
    result = subprocess.run(
        ["./keadm", "join", "--token=t", "--fake-stderr-mb=3"],
        cwd=keadm.workdir,
        env=keadm.environment,
        capture_output=True,
        check=False,
        timeout=COMMAND_TIMEOUT,
    )

    assert result.returncode == 0
    assert len(result.stderr) == 3 * 2**20


def test_hang_knob_runs_until_killed(keadm: FakeKeadm) -> None:
    process = keadm.start("join", "--token=t", "--fake-hang")
    try:
        running_child(process, ("sleep", "infinity"))  # an endless wait, not a long one
        assert keadm.records() == []
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=COMMAND_TIMEOUT) == 143
    finally:
        stop_group(process)

    assert [record.outcome for record in keadm.records()] == ["killed"]


def test_version_and_unknown_commands(keadm: FakeKeadm) -> None:
    version = keadm.run("version")
    unknown = keadm.run("init")

    assert version.returncode == 0
    assert 'GitVersion:"v1.22.0"' in version.stdout
    assert unknown.returncode == 1
    assert 'unknown command "init"' in unknown.stderr


@pytest.mark.lab
def test_packaged_keadm_joins_a_lab_node_with_the_batch_command(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    """What kenornir will do: stage the padded binary and copyFrom files in /tmp/kubeedge/keadm,
    then run the inventory's rendered keadmCmd there over SSH; the node records the join."""
    lab = make_lab(nodes=2, arch_mix=True)
    offline_package_dir = lab_packages["arm64"].parent.parent
    inventory = lab.write_inventory(tmp_path / "lab.yaml", offline_package_dir)
    config = yaml.safe_load(inventory.read_text())
    entry = config["nodes"][1]
    node = lab.node(entry["nodeName"])
    command = entry["keadmCmd"].replace("{{.cmd}}", config["keadm"]["cmdTplArgs"]["cmd"])
    command = command.replace("{{.token}}", config["keadm"]["cmdTplArgs"]["token"])
    with tarfile.open(lab_packages[node.goarch], "r:gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    binary = next((tmp_path / "unpacked").glob("keadm-*/keadm/keadm"))
    stage = "mkdir -p /tmp/kubeedge/keadm && cat > /tmp/kubeedge/keadm/keadm"
    for local, remote_command in [
        (binary, stage + " && chmod 0755 /tmp/kubeedge/keadm/keadm"),
        (Path(entry["copyFrom"]) / "preflight.sh", "cat > /tmp/kubeedge/keadm/preflight.sh"),
    ]:
        with local.open("rb") as content:
            upload = subprocess.run(
                lab.ssh_command(node.name, remote_command), stdin=content, check=False
            )
        assert upload.returncode == 0

    joined = subprocess.run(
        lab.ssh_command(node.name, f"cd /tmp/kubeedge/keadm && ./keadm {command}"),
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT,
    )

    assert joined.returncode == 0, joined.stderr
    assert f"arch {node.arch}" in joined.stdout  # the preflight pre-run ran on the node
    [record] = lab.join_records(node.name)
    assert record.outcome == "ok"
    assert record.cwd == "/tmp/kubeedge/keadm"
    assert record.argv == ("join", *shlex.split(command)[1:])
    assert f"--edgenode-name={node.name}" in record.argv
    assert lab.join_records(lab.nodes[0].name) == []
