"""Ctrl-C in the middle of a 30-node run: nothing new starts, nothing runs on, nothing is lost."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.faults.conftest import JOIN_CMD, FaultLabFactory, stray_processes

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

NODES = 30
STAGE_LINE = re.compile(r"^(node-\d+): (connect|arch|stage-dir|upload|pre-run|keadm|post-run)$")


def test_ctrl_c_stops_the_run_cleanly(make_fault_lab: FaultLabFactory) -> None:
    faults = make_fault_lab(nodes=NODES)
    names = [node.name for node in faults.lab.nodes]
    slow = JOIN_CMD + " --fake-sleep=3"
    config = faults.config([faults.entry(name, cmd=slow) for name in names])
    process = faults.start(config, "ctrl-c", "--workers", "5")
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while sum(line.endswith(": keadm\n") for line in seen) < 3 and time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"the run ended before three nodes reached keadm: {seen}"
        seen.append(line)

    process.send_signal(signal.SIGINT)
    run = faults.finish(process, "ctrl-c", stdout_seen="".join(seen))

    assert run.exit_code == 130
    assert run.report["exit_code"] == 130
    assert "interrupted" in run.stdout
    statuses = run.statuses()
    started = {m[1] for line in run.stdout.splitlines() if (m := STAGE_LINE.match(line))}
    assert {statuses[name] for name in started} <= {"ok", "interrupted"}
    assert {statuses[name] for name in set(names) - started} == {"skipped"}
    assert sum(status == "interrupted" for status in statuses.values()) >= 3
    for name in names:
        record = run.record(name)
        outcomes = [join.outcome for join in faults.lab.join_records(name)]
        if record["status"] == "skipped":
            # Never connected: nothing staged, keadm never ran.
            assert faults.lab.exec(name, "test -e /tmp/kubeedge").returncode == 1, name
            assert outcomes == []
        elif record["status"] == "interrupted":
            # Killed on the node (before its TERM trap was set, it leaves no record), never done.
            assert outcomes in ([], ["killed"]), name
        assert stray_processes(faults.lab, name) == [], name
    events = [event for event in run.events() if "node" in event]
    assert sorted(events, key=lambda e: e["node"]) == run.report["nodes"]
