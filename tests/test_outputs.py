"""What an operator sees and keeps: node-prefixed lines, node logs, events, report, no secrets."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.batch_configs import LAB_TOKEN, node_entry, offline_dir_of, run_python, write_config
from tests.conftest import require_lab_host
from tests.lab import Lab, leased_subnet

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "report.schema.json").read_text())
FLEET = 30
FAILING = {"node-004", "node-017", "node-029"}


@pytest.fixture(scope="module")
def fleet_run(
    tmp_path_factory: pytest.TempPathFactory, lab_packages: dict[str, Path]
) -> Iterator[tuple[Lab, Path, subprocess.CompletedProcess[str]]]:
    """A 30-node lab (arch mix, some password logins) run once through the CLI, 3 nodes failing."""
    require_lab_host()
    workdir = tmp_path_factory.mktemp("fleet")
    with leased_subnet() as subnet:
        lab = Lab(workdir / "lab", subnet)
        try:
            lab.up(FLEET, arch_mix=True)
            nodes = []
            for index, node in enumerate(lab.nodes):
                cmd = "{{.cmd}} --edgenode-name={{nodeName}} --token={{.token}}"
                if node.name in FAILING:
                    cmd = "{{.cmd}} --edgenode-name={{nodeName}} --token=invalid"
                auth = "password" if index % 3 == 0 else "privateKey"
                nodes.append(node_entry(lab, node.name, cmd=cmd, auth=auth))
            config = write_config(
                workdir / "fleet.yaml", nodes, offline_dir_of(lab_packages), max_run_num=10
            )
            argv = ["-m", "kenornir", config, "--run-dir", workdir / "run"]
            result = run_python(argv, workdir, timeout=300)
            yield lab, workdir / "run", result
        finally:
            lab.down()


def test_every_live_line_names_its_node(
    fleet_run: tuple[Lab, Path, subprocess.CompletedProcess[str]],
) -> None:
    lab, _, result = fleet_run
    assert result.returncode == 1, result.stderr
    live = result.stdout[: result.stdout.index("NODE ")].splitlines()
    names = {node.name for node in lab.nodes}
    assert live and all(line.split(":")[0] in names for line in live)
    # One line per stage change: at least connect, arch, stage-dir, upload, keadm, outcome.
    assert len(live) >= 6 * FLEET
    assert result.stderr == ""
    assert "\r" not in result.stdout and "\033" not in result.stdout  # a pipe: no progress bar


def test_node_logs_events_and_report(
    fleet_run: tuple[Lab, Path, subprocess.CompletedProcess[str]],
) -> None:
    lab, run_dir, _ = fleet_run
    assert sorted(p.stem for p in run_dir.glob("*.log") if p.stem != "run") == sorted(
        node.name for node in lab.nodes
    )
    records = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    node_records = [r for r in records if "node" in r]
    assert len(node_records) == FLEET
    assert all("event" in r for r in records if "node" not in r)
    report = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["totals"] == {
        "ok": FLEET - 3,
        "failed": 3,
        "unreachable": 0,
        "interrupted": 0,
        "skipped": 0,
    }
    assert {n["node"] for n in report["nodes"] if n["status"] == "failed"} == FAILING
    verified = {"version": "v1.22.0", "source": "offline", "sha512_verified": True}
    assert report["packages"] == dict.fromkeys(("amd64", "arm", "arm64"), verified)
    assert sorted(node_records, key=lambda r: r["node"]) == report["nodes"]


def test_a_node_log_tells_the_whole_story(
    fleet_run: tuple[Lab, Path, subprocess.CompletedProcess[str]],
) -> None:
    _, run_dir, _ = fleet_run
    log = (run_dir / "node-004.log").read_text()
    for expected in (
        "stage connect",
        "stage upload done in",
        "running: cd /tmp/kubeedge/keadm && ./keadm join --edgenode-name=node-004 --token=***",
        "stderr: Error: failed to get CA certificate",
        "failed at stage keadm: keadm failed (exit 1)",
    ):
        assert expected in log


def test_no_password_or_token_anywhere(
    fleet_run: tuple[Lab, Path, subprocess.CompletedProcess[str]],
) -> None:
    lab, run_dir, result = fleet_run
    for secret in (lab.password, LAB_TOKEN):
        assert secret not in result.stdout + result.stderr
        for path in run_dir.iterdir():
            assert secret not in path.read_text(errors="replace"), path.name


def test_progress_bar_on_a_terminal(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    name = lab.nodes[0].name
    lab.exec(name, "rm -rf /tmp/kubeedge")
    config = write_config(
        tmp_path / "one.yaml",
        [node_entry(lab, name, cmd="{{.cmd}} --token={{.token}} --fake-sleep=1.5")],
        offline_dir_of(lab_packages),
    )
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "kenornir", str(config), "--run-dir", str(tmp_path / "run")],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    ) as process:
        os.close(terminal)
        screen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(timeout=60) == 0
    os.close(controller)
    text = screen.decode()
    assert "0/1 done, 0 failed, 1 running" in text
    assert f"{name}: ok" in text
