"""`python -m kenornir` as an operator runs it: exit codes, spellings, --json, reruns, prepare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kenornir.packages import checksum_name, tarball_name
from kenornir.report import failed_nodes_of
from tests.batch_configs import LAB_TOKEN, node_entry, offline_dir_of, run_python, write_config
from tests.http_server import LocalHTTPServer
from tests.lab import Lab
from tests.lab.packages import build_packages
from tests.test_packages_offline import Member, write_tarball

VERSION = "v1.22.0"


def kenornir(
    *args: str | Path, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_python(["-m", "kenornir", *args], cwd, timeout)


def offline_config(path: Path, offline_dir: Path) -> Path:
    """One amd64 node on a loopback port where nothing listens, packages from offline_dir."""
    path.write_text(
        "keadm:\n"
        "  download: {enable: false}\n"
        f"  keadmVersion: {VERSION}\n"
        "  archGroup: [amd64]\n"
        f"  offlinePackageDir: {offline_dir}\n"
        "nodes:\n"
        "  - nodeName: edge-1\n"
        "    keadmCmd: join\n"
        "    ssh: {ip: 127.0.0.1, port: 1, username: root, auth: {type: password, "
        "passwordAuth: {password: pw}}}\n"
    )
    path.chmod(0o600)
    return path


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def two_node_config(lab: Lab, lab_packages: dict[str, Path], tmp_path: Path) -> Path:
    names = [n.name for n in lab.nodes[:2]]
    nodes = [node_entry(lab, name, cmd="{{.cmd}} --token={{.token}}") for name in names]
    nodes[1]["keadmCmd"] = "{{.cmd}} --token=invalid"
    for node in lab.nodes[:2]:  # other tests may have left the sudo user's staging dir
        lab.exec(node.name, "rm -rf /tmp/kubeedge")
    return write_config(tmp_path / "batch.yaml", nodes, offline_dir_of(lab_packages))


@pytest.mark.lab
class TestRun:
    def test_default_command_exit_code_and_summary(
        self, two_node_config: Path, tmp_path: Path, lab: Lab
    ) -> None:
        result = kenornir(two_node_config, cwd=tmp_path)
        no_traceback(result)
        assert result.returncode == 1, result.stderr
        first, second = (n.name for n in lab.nodes[:2])
        assert f"{first}: ok" in result.stdout
        assert f"{second}: failed at keadm" in result.stdout
        assert "2 nodes: 1 ok, 1 failed" in result.stdout
        latest = tmp_path / "kenornir-runs" / "latest"
        assert (latest / "report.json").exists()
        assert LAB_TOKEN not in result.stdout + result.stderr

    def test_keadm_spelling_limit_and_json(
        self, two_node_config: Path, tmp_path: Path, lab: Lab
    ) -> None:
        first = lab.nodes[0].name
        result = kenornir("-c", two_node_config, "--limit", first, "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["selection"]["nodes"] == [first]
        assert report["totals"]["ok"] == 1
        statuses = {n["node"]: n["status"] for n in report["nodes"]}
        assert statuses[lab.nodes[1].name] == "skipped"  # deselected
        assert f"{first}: ok" in result.stderr  # live lines leave stdout to the JSON

    def test_rerun_failed_defaults_to_the_latest_run(
        self, two_node_config: Path, tmp_path: Path, lab: Lab
    ) -> None:
        assert kenornir(two_node_config, cwd=tmp_path).returncode == 1
        rerun = kenornir("run", two_node_config, "--rerun-failed", "--json", cwd=tmp_path)
        assert json.loads(rerun.stdout)["selection"]["nodes"] == [lab.nodes[1].name]
        assert rerun.returncode == 1

    def test_nothing_to_rerun_after_a_clean_run(
        self, two_node_config: Path, tmp_path: Path, lab: Lab
    ) -> None:
        first = lab.nodes[0].name
        assert kenornir(two_node_config, "--limit", first, cwd=tmp_path).returncode == 0
        rerun = kenornir(two_node_config, "--rerun-failed", cwd=tmp_path)
        assert rerun.returncode == 0
        assert "nothing to rerun" in rerun.stdout

    def test_selection_that_matches_nothing_is_a_usage_error(
        self, two_node_config: Path, tmp_path: Path
    ) -> None:
        result = kenornir(two_node_config, "--limit", "no-such-node", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "kenornir: error: no node matches the selection (--limit/--exclude/--label)"
        )

    def test_run_dir_that_cannot_be_created_is_a_usage_error(
        self, two_node_config: Path, tmp_path: Path
    ) -> None:
        in_the_way = tmp_path / "a-file"
        in_the_way.write_text("")
        result = kenornir(two_node_config, "--run-dir", in_the_way, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"kenornir: error: cannot create run dir {in_the_way}: File exists"
        )

    def test_verbose_adds_nornir_print_result(self, two_node_config: Path, tmp_path: Path) -> None:
        result = kenornir(two_node_config, "-v", cwd=tmp_path)
        assert "join_node" in result.stdout and "connect" in result.stdout
        assert LAB_TOKEN not in result.stdout


def test_invalid_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("maxRunNum: -1\nnodes: []\n")
    result = kenornir(config, cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 2
    assert all(line.startswith(f"{config}: ") for line in result.stderr.splitlines())


class TestPrepare:
    """`kenornir prepare` against a real local HTTP server: exit 0, 3 with one line, or 2."""

    @pytest.fixture
    def mirror(self, tmp_path: Path) -> Iterator[tuple[LocalHTTPServer, Path]]:
        www = tmp_path / "www"
        build_packages(www, VERSION, ("amd64", "arm64"), 2**20, "flat")
        server = LocalHTTPServer(www)
        config = tmp_path / "download.yaml"
        config.write_text(
            "keadm:\n"
            f"  download: {{enable: true, url: '{server.url}'}}\n"
            f"  keadmVersion: {VERSION}\n"
            "  archGroup: [amd64, arm64]\n"
            "nodes:\n"
            "  - nodeName: edge-1\n"
            "    keadmCmd: join --token=x\n"
            "    ssh: {ip: 127.0.0.1, username: root, auth: {type: password, "
            "passwordAuth: {password: pw}}}\n"
        )
        config.chmod(0o600)
        yield server, config
        server.close()

    def prepare(self, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        cache = config.parent / "cache"
        return kenornir("prepare", config, "--cache-dir", cache, *extra, cwd=config.parent)

    def test_success_lists_every_arch_then_uses_the_cache(
        self, mirror: tuple[LocalHTTPServer, Path]
    ) -> None:
        server, config = mirror
        result = self.prepare(config)
        assert result.returncode == 0, result.stderr
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["amd64", "arm64"]
        assert "sha512 verified" in result.stdout
        again = self.prepare(config)
        assert again.returncode == 0
        assert " cache " in again.stdout
        assert server.requests[f"/{tarball_name(VERSION, 'amd64')}"] == 1

    def test_corrupted_tarball(self, mirror: tuple[LocalHTTPServer, Path]) -> None:
        server, config = mirror
        server.corrupt(f"/{tarball_name(VERSION, 'arm64')}")
        result = self.prepare(config)
        assert result.returncode == 3
        (line,) = result.stderr.splitlines()
        assert line.startswith("kenornir: preparing keadm packages failed: ")
        assert "sha512" in line and "arm64" in line

    def test_missing_checksum_fails_unless_skipped_explicitly(
        self, mirror: tuple[LocalHTTPServer, Path]
    ) -> None:
        _, config = mirror
        for arch in ("amd64", "arm64"):
            (config.parent / "www" / checksum_name(VERSION, arch)).unlink()
        result = self.prepare(config)
        assert result.returncode == 3
        assert len(result.stderr.splitlines()) == 1
        skipped = self.prepare(config, "--insecure-skip-checksum")
        assert skipped.returncode == 0, skipped.stderr
        assert "NOT verified" in skipped.stdout

    def test_release_without_the_arch(self, mirror: tuple[LocalHTTPServer, Path]) -> None:
        server, config = mirror
        server.fail_with(f"/{tarball_name(VERSION, 'amd64')}", 404)
        result = self.prepare(config)
        assert result.returncode == 3
        assert "amd64" in result.stderr and "404" in result.stderr

    def test_unsafe_offline_package(self, tmp_path: Path) -> None:
        offline = tmp_path / "offline" / "amd64"
        offline.mkdir(parents=True)
        root = f"keadm-{VERSION}-linux-amd64"
        write_tarball(
            offline / tarball_name(VERSION, "amd64"),
            [
                Member(f"{root}/keadm/keadm", data=b"#!/bin/sh\n"),
                Member(f"{root}/../../evil", data=b"x"),
            ],
        )
        config = offline_config(tmp_path / "offline.yaml", tmp_path / "offline")
        result = self.prepare(config, "--insecure-skip-checksum")
        assert result.returncode == 3
        warning, error = result.stderr.splitlines()
        assert warning.startswith("kenornir: warning: ") and "not verified" in warning
        assert error.startswith("kenornir: preparing keadm packages failed: amd64: ")
        assert "../../evil" in error
        assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def wait_for_line(process: subprocess.Popen[str], wanted: str, limit: float) -> list[str]:
    """Read the child's stdout until a line contains `wanted` (or the limit passes)."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if wanted in line:
            return seen
    raise AssertionError(f"no line with {wanted!r} in {seen}")


@pytest.mark.lab
@pytest.mark.timeout(120)
def test_sigkill_midway_keeps_every_finished_node_for_the_rerun(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    """The controller dies hard: events.jsonl holds each node that finished, and a rerun takes
    exactly the nodes not recorded as ok."""
    for node in lab.nodes:
        lab.exec(node.name, "rm -rf /tmp/kubeedge")
    slow = "{{.cmd}} --token={{.token}} --fake-sleep=1"
    nodes = [node_entry(lab, n.name, cmd=slow) for n in lab.nodes]
    config = write_config(tmp_path / "slow.yaml", nodes, offline_dir_of(lab_packages))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "kenornir", str(config), "--run-dir", str(run_dir)]
    with subprocess.Popen(
        [*command, "--workers", "2", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        wait_for_line(process, ": ok (", limit=60)
        wait_for_line(process, ": ok (", limit=60)
        process.send_signal(signal.SIGKILL)
    assert not (run_dir / "report.json").exists()
    records = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    finished_ok = {r["node"] for r in records if r.get("status") == "ok"}
    assert len(finished_ok) >= 2
    expected = [n.name for n in lab.nodes if n.name not in finished_ok]
    assert failed_nodes_of(run_dir) == expected
    rerun = kenornir(config, "--rerun-failed", run_dir, "--json", cwd=tmp_path)
    assert json.loads(rerun.stdout)["selection"]["nodes"] == expected
    assert rerun.returncode == 0, rerun.stderr


def test_run_whose_package_is_missing_exits_3_and_reports_every_node_skipped(
    tmp_path: Path,
) -> None:
    (tmp_path / "offline").mkdir()
    config = offline_config(tmp_path / "batch.yaml", tmp_path / "offline")
    result = kenornir(config, "--run-dir", tmp_path / "run", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 3
    assert result.stderr.startswith("kenornir: preparing keadm packages failed: amd64: ")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["exit_code"] == 3
    assert [(n["status"], n["reason"]) for n in report["nodes"]] == [
        ("skipped", "keadm packages could not be prepared")
    ]
