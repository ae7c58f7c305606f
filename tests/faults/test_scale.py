"""100 nodes, 10 of them broken in 10 different ways: 90 succeed, the 10 are each reported right."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.conftest import JOIN_CMD, STAGING, FaultLab, FaultLabFactory

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

NODES = 100


def break_nodes(faults: FaultLab) -> dict[str, tuple[dict[str, Any], tuple[str, str, str]]]:
    """Ten faults on ten nodes spread over the run: node -> (its config entry, the expected
    (status, stage, reason part))."""
    lab, workdir = faults.lab, faults.workdir
    tamper = workdir / "tamper.sh"
    tamper.write_text(f"#!/bin/bash\nprintf x >> {STAGING}/keadm\n")
    failing_hook = workdir / "failing-hook.sh"
    failing_hook.write_text("#!/bin/bash\necho 'preflight: containerd missing' >&2\nexit 3\n")
    wrong_password = faults.entry("node-030", auth="password")
    wrong_password["ssh"]["auth"]["passwordAuth"]["password"] = "not-the-lab-password-3141"
    faults.secrets.append("not-the-lab-password-3141")
    for name in ("node-010", "node-020"):
        lab.stop_sshd(name)
    lab.exec("node-070", "mkdir -p /tmp/kubeedge && chown edge:edge /tmp/kubeedge")
    tiny = lab.add_node(tmp_size_mb=2).name  # node-100: the 4 MiB keadm cannot fit
    return {
        "node-010": (faults.entry("node-010"), ("unreachable", "connect", "connection refused")),
        "node-020": (faults.entry("node-020"), ("unreachable", "connect", "connection refused")),
        "node-025": (faults.entry("node-025"), ("unreachable", "connect", "no SSH banner")),
        "node-030": (wrong_password, ("failed", "connect", "password refused")),
        "node-040": (
            faults.entry("node-040", cmd="{{.cmd}} --token=invalid"),
            ("failed", "keadm", "token credentials are in the wrong format"),
        ),
        "node-050": (
            faults.entry("node-050", cmd=JOIN_CMD + " --fake-hang"),
            ("failed", "keadm", "did not finish within 8s"),
        ),
        "node-070": (faults.entry("node-070"), ("failed", "stage-dir", "owned by uid")),
        "node-080": (
            faults.entry("node-080", extra={"preRun": [str(tamper)]}),
            ("failed", "keadm", "differs from the uploaded one"),
        ),
        "node-090": (
            faults.entry("node-090", extra={"preRun": [str(failing_hook)]}),
            ("failed", "pre-run", "containerd missing"),
        ),
        tiny: (faults.entry(tiny), ("failed", "upload", "no space left")),
    }


def test_ninety_succeed_and_ten_faults_are_each_reported(
    make_fault_lab: FaultLabFactory,
) -> None:
    faults = make_fault_lab(nodes=NODES - 1)
    broken = break_nodes(faults)
    nodes = [
        broken[node.name][0] if node.name in broken else faults.entry(node.name, auth=auth)
        for node, auth in zip(faults.lab.nodes, ["privateKey", "password"] * NODES, strict=False)
    ]
    config = faults.config(nodes)
    faults.lab.freeze("node-025")
    try:
        run = faults.run(
            config,
            "hundred",
            *("--workers", "20", "--connect-timeout", "5", "--command-timeout", "8"),
            timeout=170,
        )
    finally:
        faults.lab.thaw("node-025")

    assert run.exit_code == 1
    records = {r["node"]: r for r in run.report["nodes"]}
    assert len(records) == NODES
    for name, (_, (status, stage, reason)) in broken.items():
        record = records.pop(name)
        assert (record["status"], record["stage"]) == (status, stage), record
        assert reason in record["reason"], record
    assert {r["status"] for r in records.values()} == {"ok"}
    assert run.report["totals"] == {
        "ok": 90,
        "failed": 7,
        "unreachable": 3,
        "interrupted": 0,
        "skipped": 0,
    }
    events = [event for event in run.events() if "node" in event]
    assert sorted(events, key=lambda e: e["node"]) == run.report["nodes"]
