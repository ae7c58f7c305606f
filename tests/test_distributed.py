"""One batch across per-site workers on a real redis-server: a site only its own worker (inside
the site's network namespace) can reach, secrets that never cross the broker, TLS, and the
faults: a worker killed mid-node, a site without a worker, a broker that is down, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.batch_configs import LAB_TOKEN, node_entry, offline_dir_of, write_config
from tests.distributed import Worker, monitor, redis_server, workers
from tests.lab import Lab, LabFactory, build_packages
from tests.test_outputs import SCHEMA

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

SITE = "north"
TOKEN_VARIABLE = "KN_TEST_JOIN_TOKEN"
JOIN = "join --token={{.token}}"


def controller_argv(workdir: Path, config: Path, run: str, *args: str) -> list[str]:
    return [
        *(sys.executable, "-m", "kenornir", str(config), "--no-progress"),
        *("--run-dir", str(workdir / run), "--known-hosts", str(workdir / "known_hosts")),
        *("--cache-dir", str(workdir / "cache"), *args),
    ]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, TOKEN_VARIABLE: LAB_TOKEN, **extra}


def controller_environment() -> dict[str, str]:
    """The controller's: the join token is the workers' alone (they resolve ${NAME})."""
    return {name: value for name, value in os.environ.items() if name != TOKEN_VARIABLE}


def controller(
    workdir: Path, config: Path, run: str, *args: str, cwd: Path | None = None
) -> dict[str, Any]:
    """Run the controller to its end; its report.json, stdout and stderr."""
    completed = subprocess.run(
        controller_argv(workdir, config, run, *args),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=controller_environment(),
        cwd=cwd,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    report: dict[str, Any] = json.loads((workdir / run / "report.json").read_text())
    report["stdout"], report["stderr"] = completed.stdout, completed.stderr
    report["returncode"] = completed.returncode
    return report


class LiveRun:
    """The controller running in the background, its output lines collected as they come."""

    def __init__(self, argv: list[str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=controller_environment(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def wait_for_stage(self, stage: str, nodes: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(line.endswith(f": {stage}") for line in self.lines) < nodes:
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> str:
        self.process.wait(timeout)
        self._reader.join(10)
        return "\n".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))


def records(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["node"]: record for record in report["nodes"]}


def slow_hook(workdir: Path, seconds: int) -> str:
    """A preRun script that keeps the node busy (a node at work when a worker dies)."""
    script = workdir / f"sleep-{seconds}.sh"
    script.write_text(f"#!/bin/sh\nsleep {seconds}\n")
    return str(script)


def plain_config(lab: Lab, workdir: Path, name: str, **node_extra: Any) -> Path:
    entries = [node_entry(lab, node.name, cmd=JOIN, extra=node_extra) for node in lab.nodes]
    return write_config(
        workdir / name,
        entries,
        offline_dir_of_lab(workdir),
        token=f"${{{TOKEN_VARIABLE}}}",
        max_run_num=len(entries),
    )


def offline_dir_of_lab(workdir: Path) -> Path:
    return Path((workdir / "offline-dir").read_text())


@pytest.fixture
def offline(lab_packages: dict[str, Path], tmp_path: Path) -> Path:
    directory = offline_dir_of(lab_packages)
    (tmp_path / "offline-dir").write_text(str(directory))
    return directory


def test_two_sites_each_run_by_its_own_worker_and_no_secret_crosses_the_broker(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=4, sites={SITE: 2})
    site = lab.site(SITE)
    here = [node.name for node in lab.nodes if node.name not in site.node_names]
    entries = [node_entry(lab, name, cmd=JOIN) for name in here]
    entries += [node_entry(lab, name, cmd=JOIN, extra={"site": SITE}) for name in site.node_names]
    config = write_config(tmp_path / "sites.yaml", entries, offline, token=f"${{{TOKEN_VARIABLE}}}")
    with (
        redis_server(tmp_path / "redis", ("127.0.0.1", site.host_address)) as redis,
        workers(
            lambda: Worker(tmp_path, redis.url(), "hq", env=environment()),
            # Inside the site: the only process that reaches its nodes; it dials out to Redis.
            lambda: Worker(
                tmp_path,
                redis.url(site.host_address),
                "north-1",
                sites=[SITE],
                netns=site.netns,
                env=environment(),
            ),
        ),
        monitor(redis, tmp_path / "monitor.log") as traffic,
    ):
        os.environ["BROKER_PASSWORD"] = redis.password
        try:
            broker = redis.url(password="${BROKER_PASSWORD}")
            report = controller(tmp_path, config, "run", "--broker", broker)
        finally:
            del os.environ["BROKER_PASSWORD"]
    workers_of = {name: record["worker"] for name, record in records(report).items()}
    assert {name: r["status"] for name, r in records(report).items()} == dict.fromkeys(
        [*here, *site.node_names], "ok"
    ), report["stdout"] + report["stderr"]
    assert workers_of == {**dict.fromkeys(here, "hq"), **dict.fromkeys(site.node_names, "north-1")}
    assert report["exit_code"] == 0 and report["returncode"] == 0
    jsonschema.validate(json.loads((tmp_path / "run" / "report.json").read_text()), SCHEMA)
    assert redis.password not in json.dumps(report["options"])
    for name in site.node_names:  # each node's log came back from its worker
        log = (tmp_path / "run" / f"{name}.log").read_text()
        assert "started on worker north-1" in log and "stage keadm done" in log
    seen = traffic.read_text(errors="replace")
    assert "kenornir.join_node" in seen and "kenornir.site.north" in seen  # it did capture
    assert f"${{{TOKEN_VARIABLE}}}" in seen  # the node config went through unresolved
    assert LAB_TOKEN not in seen
    assert "WORKER" in report["stdout"]
    assert f"{TOKEN_VARIABLE} not set here: the workers read it" in report["stderr"]


def test_a_worker_killed_mid_node_fails_only_that_node_and_a_rerun_finishes_it(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=4)
    hook = slow_hook(tmp_path, 3)
    config = plain_config(lab, tmp_path, "kill.yaml", preRun=[hook])
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(
            lambda: Worker(tmp_path, redis.url(), "doomed", concurrency=1, env=environment()),
            lambda: Worker(tmp_path, redis.url(), "steady", concurrency=1, env=environment()),
        ) as (doomed, steady),
    ):
        argv = controller_argv(tmp_path, config, "run", "--broker", redis.url())
        run = LiveRun([*argv, "--worker-timeout", "4"])
        run.wait_for_stage("pre-run", 2)  # each worker is at work on one node
        doomed.kill()
        output = run.finish()
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        by_node = records(report)
        lost = [name for name, record in by_node.items() if record["worker"] == "doomed"]
        assert len(lost) == 1, output
        record = by_node[lost[0]]
        assert (record["status"], record["stage"]) == ("failed", "pre-run"), record
        assert record["reason"].startswith("worker doomed lost"), record
        others = {name: r for name, r in by_node.items() if name != lost[0]}
        assert {r["status"] for r in others.values()} == {"ok"}, output
        assert {r["worker"] for r in others.values()} == {"steady"}  # the queued ones moved
        assert run.process.returncode == 1

        rerun = controller(
            tmp_path,
            config,
            "rerun",
            "--broker",
            redis.url(),
            "--rerun-failed",
            str(tmp_path / "run"),
        )
        assert [(r["node"], r["status"]) for r in rerun["nodes"] if r["status"] != "skipped"] == [
            (lost[0], "ok")
        ]
        assert steady.process.poll() is None


def test_a_site_without_a_worker_ends_unreachable_and_the_rest_goes_on(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=2)
    first, second = (node.name for node in lab.nodes)
    entries = [
        node_entry(lab, first, cmd=JOIN),
        node_entry(lab, second, cmd=JOIN, extra={"site": "south"}),
    ]
    config = write_config(tmp_path / "south.yaml", entries, offline)
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq")),
    ):
        report = controller(
            tmp_path, config, "run", "--broker", redis.url(), "--worker-timeout", "3"
        )
    by_node = records(report)
    assert (by_node[first]["status"], by_node[first]["worker"]) == ("ok", "hq")
    assert by_node[second]["status"] == "unreachable"
    assert by_node[second]["reason"] == "no worker for site south"
    assert by_node[second]["worker"] is None
    assert report["returncode"] == 1
    assert "no worker for site south" in (tmp_path / "run" / f"{second}.log").read_text()
    # The token is written in this config: it travels, and the controller says so once.
    warnings = [line for line in report["stderr"].splitlines() if "travel through" in line]
    assert len(warnings) == 1 and "keadm.cmdTplArgs.token" in warnings[0], report["stderr"]


def test_a_worker_without_the_nodes_secret_fails_the_node_saying_so(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1)
    config = plain_config(lab, tmp_path, "no-secret.yaml")
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq")),  # no KN_TEST_JOIN_TOKEN here
    ):
        report = controller(tmp_path, config, "run", "--broker", redis.url())
    (record,) = report["nodes"]
    assert (record["status"], record["worker"]) == ("failed", "hq")
    assert record["reason"].startswith("the config does not validate on worker hq: ")
    assert f"environment variable {TOKEN_VARIABLE} is not set" in record["reason"]
    assert lab.join_records(record["node"]) == []


def test_a_broker_that_is_down_stops_the_run_with_one_line(
    lab: Lab, offline: Path, tmp_path: Path
) -> None:
    config = plain_config(lab, tmp_path, "down.yaml")
    closed = "redis://:sesame-9f8e@127.0.0.1:9/0"  # port 9 (discard) is closed on loopback
    completed = subprocess.run(
        controller_argv(tmp_path, config, "run", "--broker", closed),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment(),
    )
    assert completed.returncode == 2
    errors = completed.stderr.strip().splitlines()
    assert errors[-1].startswith("kenornir: error: cannot reach the broker at redis://:***@127.")
    assert len([line for line in errors if "error" in line]) == 1, completed.stderr
    assert "sesame-9f8e" not in completed.stderr + completed.stdout
    assert not (tmp_path / "run").exists()


def test_ctrl_c_revokes_the_queued_nodes_and_stops_the_running_ones(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=3)
    hook = slow_hook(tmp_path, 60)
    config = plain_config(lab, tmp_path, "stop.yaml", preRun=[hook])
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq", concurrency=2, env=environment())),
    ):
        run = LiveRun(controller_argv(tmp_path, config, "run", "--broker", redis.url()))
        run.wait_for_stage("pre-run", 2)
        stopped = time.monotonic()
        run.process.send_signal(signal.SIGINT)
        output = run.finish(60)
        assert time.monotonic() - stopped < 30  # not the 60 s the hooks sleep
        assert run.process.returncode == 130, output
        assert "Traceback" not in output
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        statuses = sorted(record["status"] for record in report["nodes"])
        assert statuses == ["interrupted", "interrupted", "skipped"], output
        queued = next(r for r in report["nodes"] if r["status"] == "skipped")
        assert queued["reason"] == "run interrupted before this node started"
        time.sleep(2)  # the queued node's task was revoked: no worker takes it up later
        assert lab.join_records(queued["node"]) == []
        assert "kenornir.join_node" not in redis_queue_text(redis, "kenornir")


def test_a_broker_lost_mid_run_ends_every_node_recorded(
    make_lab: LabFactory, offline: Path, tmp_path: Path
) -> None:
    lab = make_lab(nodes=3)
    config = plain_config(lab, tmp_path, "lost.yaml", preRun=[slow_hook(tmp_path, 8)])
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq", concurrency=2, env=environment())),
    ):
        argv = controller_argv(tmp_path, config, "run", "--broker", redis.url())
        run = LiveRun([*argv, "--worker-timeout", "3", "--workers", "2"])
        run.wait_for_stage("pre-run", 2)
        redis.stop()
        output = run.finish(60)
    assert run.process.returncode == 1, output
    assert "Traceback" not in output, output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    reasons = sorted(record["reason"].split(" (")[0] for record in report["nodes"])
    assert reasons == ["lost touch with the broker"] * 2 + ["not sent: lost touch with the broker"]
    assert {record["status"] for record in report["nodes"]} == {"failed"}


def test_a_worker_whose_keadm_differs_from_the_controllers_sends_it_to_no_node(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    """The same relative offlinePackageDir holds another keadm on the worker's machine: the
    worker prepares it by the same rules, finds its digest is not the one the controller
    verified, and fails the node before anything is uploaded."""
    lab = make_lab(nodes=1)
    (name,) = (node.name for node in lab.nodes)
    here, there = tmp_path / "controller", tmp_path / "worker"
    build_packages(here / "packages", arches=("amd64",), binary_size=1 << 20)
    build_packages(there / "packages", arches=("amd64",), binary_size=(1 << 20) + 1)
    config = write_config(
        here / "mismatch.yaml",
        [node_entry(lab, name, cmd=JOIN)],
        Path("packages"),
        arch_group=("amd64",),
    )
    with (
        redis_server(tmp_path / "redis") as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq", cwd=there)),
    ):
        report = controller(tmp_path, config, "run", "--broker", redis.url(), cwd=here)
    (record,) = report["nodes"]
    assert (record["status"], record["worker"]) == ("failed", "hq"), report["stdout"]
    assert "the controller verified" in record["reason"]
    assert "not sent to any node" in record["reason"]
    assert lab.exec(name, "ls /tmp/kubeedge/keadm 2>&1 || true").stdout.count("keadm\n") == 0


def test_rediss_with_a_password_works(make_lab: LabFactory, offline: Path, tmp_path: Path) -> None:
    lab = make_lab(nodes=1)
    config = plain_config(lab, tmp_path, "tls.yaml")
    with (
        redis_server(tmp_path / "redis", tls=True) as redis,
        workers(lambda: Worker(tmp_path, redis.url(), "hq", env=environment())),
    ):
        assert redis.url().startswith("rediss://")
        report = controller(tmp_path, config, "run", "--broker", redis.url())
    assert [(r["status"], r["worker"]) for r in report["nodes"]] == [("ok", "hq")]


def redis_queue_text(redis: Any, queue: str) -> str:
    """What is still queued in queue."""
    env = {**os.environ, "REDISCLI_AUTH": redis.password}
    done = subprocess.run(
        redis.cli("lrange", queue, "0", "-1"), capture_output=True, text=True, env=env, check=False
    )
    return done.stdout
