"""Faults while commands run: keadm hangs, floods stderr, prints bytes that are not UTF-8, or is
swapped on the node between upload and run."""

from __future__ import annotations

import pytest

from tests.faults.conftest import JOIN_CMD, STAGING, FaultLab, stray_processes

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

FAULTY = "node-001"
FLOOD_MB = 50


def test_hung_keadm_is_killed_at_the_command_timeout(fault_lab: FaultLab) -> None:
    config = fault_lab.config(
        [fault_lab.entry(FAULTY, cmd=JOIN_CMD + " --fake-hang"), *fault_lab.healthy()]
    )

    run = fault_lab.run(config, "hang", "--command-timeout", "3")

    record = run.record(FAULTY)
    assert (record["status"], record["stage"]) == ("failed", "keadm"), record
    assert "did not finish within 3s" in record["reason"]
    assert [r.outcome for r in fault_lab.lab.join_records(FAULTY)] == ["killed"]
    assert stray_processes(fault_lab.lab, FAULTY) == []
    assert run.exit_code == 1
    fault_lab.assert_healthy_ok(run)


def test_50_mb_of_stderr_neither_stalls_the_run_nor_fills_memory_or_the_log(
    fault_lab: FaultLab,
) -> None:
    flood = f"{JOIN_CMD} --fake-stderr-mb={FLOOD_MB}"
    config = fault_lab.config([fault_lab.entry(FAULTY, cmd=flood), *fault_lab.healthy()])

    quiet = fault_lab.run(
        fault_lab.config([fault_lab.entry(FAULTY), *fault_lab.healthy()], "quiet"),
        "quiet",
        measure_memory=True,
    )
    run = fault_lab.run(config, "flood", measure_memory=True)

    assert set(run.statuses().values()) == {"ok"}
    log = run.node_log(FAULTY)
    # The log keeps the start and the end of the flood, and says how much it left out.
    assert "fake keadm stderr flood" in log
    assert "bytes of stderr not logged" in log
    assert "KubeEdge edgecore is running" in log
    assert len(log) < 4 * 2**20
    assert run.peak_rss_bytes is not None and quiet.peak_rss_bytes is not None
    growth = run.peak_rss_bytes - quiet.peak_rss_bytes
    assert growth < FLOOD_MB * 2**20 // 4, f"the flood cost {growth} bytes of controller memory"


def test_bytes_that_are_not_utf8_are_logged_escaped(fault_lab: FaultLab) -> None:
    script = fault_lab.workdir / "binary-noise.sh"
    script.write_bytes(b"#!/bin/bash\nprintf 'noise: \\377\\376 end\\n'\nprintf '\\377' >&2\n")
    faulty = fault_lab.entry(FAULTY, extra={"preRun": [str(script)]})
    config = fault_lab.config([faulty, *fault_lab.healthy()])

    run = fault_lab.run(config, "not-utf8")

    assert set(run.statuses().values()) == {"ok"}
    log = run.node_log(FAULTY)
    assert "stdout: noise: \\xff\\xfe end" in log
    assert "stderr: \\xff" in log


def test_keadm_altered_after_upload_is_refused(fault_lab: FaultLab) -> None:
    script = fault_lab.workdir / "tamper.sh"
    script.write_text(f"#!/bin/bash\nprintf x >> {STAGING}/keadm\n")
    faulty = fault_lab.entry(FAULTY, extra={"preRun": [str(script)]})
    config = fault_lab.config([faulty, *fault_lab.healthy()])

    run = fault_lab.run(config, "tampered")

    record = run.record(FAULTY)
    assert (record["status"], record["stage"]) == ("failed", "keadm"), record
    assert "differs from the uploaded one" in record["reason"]
    assert fault_lab.lab.join_records(FAULTY) == []
    fault_lab.assert_healthy_ok(run)
