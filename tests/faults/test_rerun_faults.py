"""A fleet's config run again: joined nodes are skipped (or reset and joined with --rejoin), and
transient faults before keadm are retried."""

from __future__ import annotations

import threading

import pytest

from kenornir.joined import ALREADY_JOINED
from tests.faults.conftest import FaultLab
from tests.lab.records import EDGECORE_CONFIG

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

NODES = ("node-001", "node-002", "node-003")


def joined(faults: FaultLab, name: str) -> bool:
    return faults.lab.exec(name, ["test", "-e", EDGECORE_CONFIG]).returncode == 0


def test_a_second_run_skips_joined_nodes_and_rejoin_resets_and_joins_them(
    fault_lab: FaultLab,
) -> None:
    config = fault_lab.config([fault_lab.entry(name) for name in NODES])
    first = fault_lab.run(config, "first")
    assert first.exit_code == 0, first.stdout
    assert all(joined(fault_lab, name) for name in NODES)
    first_joins = {name: fault_lab.lab.join_records(name) for name in NODES}
    assert all(len(records) == 1 for records in first_joins.values()), first_joins

    second = fault_lab.run(config, "second", unjoin=False)

    assert second.exit_code == 0, second.stdout
    for name in NODES:
        record = second.record(name)
        assert (record["status"], record["reason"]) == ("skipped", ALREADY_JOINED), record
        assert record["changed"] == []
        assert fault_lab.lab.join_records(name) == first_joins[name]  # keadm never ran
    assert "already joined" in second.stdout
    assert "uploaded" not in second.node_log(NODES[0])

    rejoined = fault_lab.run(config, "rejoin", "--rejoin", unjoin=False)

    assert rejoined.exit_code == 0, rejoined.stdout
    assert set(rejoined.statuses().values()) == {"ok"}
    for name in NODES:
        log = rejoined.node_log(name)
        assert "keadm reset first (--rejoin)" in log
        assert "reset edge --force" in log
        # reset removed the first run's record and edgecore.yaml; the join made new ones.
        records = fault_lab.lab.join_records(name)
        assert [record.outcome for record in records] == ["ok"]
        assert records[0].start > first_joins[name][0].end
        assert joined(fault_lab, name)


def test_a_node_whose_sshd_is_frozen_for_3_s_ends_ok_on_its_second_attempt(
    fault_lab: FaultLab,
) -> None:
    frozen = NODES[0]
    config = fault_lab.config([fault_lab.entry(frozen), *fault_lab.healthy()])
    fault_lab.lab.freeze(frozen)
    thaw = threading.Timer(3.0, fault_lab.lab.thaw, args=(frozen,))
    thaw.start()
    try:
        # A 1 s banner wait fails the first attempt; the retry comes at least 2.5 s later.
        run = fault_lab.run(config, "frozen", "--connect-timeout", "1", "--retry-delay", "5")
    finally:
        thaw.cancel()
        fault_lab.lab.thaw(frozen)

    record = run.record(frozen)
    assert (record["status"], record["attempts"]) == ("ok", 2), record
    log = run.node_log(frozen)
    assert "attempt 1 failed at stage connect" in log, log
    assert "attempt 2" in log
    assert "TRIES" in run.stdout
    fault_lab.assert_healthy_ok(run)
    assert all(run.record(name)["attempts"] == 1 for name in NODES[1:])


def test_a_node_that_stays_down_is_tried_retries_plus_one_times(fault_lab: FaultLab) -> None:
    down = NODES[0]
    fault_lab.lab.stop_sshd(down)
    config = fault_lab.config([fault_lab.entry(down), *fault_lab.healthy()])

    run = fault_lab.run(config, "down", "--retries", "1", "--retry-delay", "0.1")

    record = run.record(down)
    assert (record["status"], record["stage"], record["attempts"]) == (
        "unreachable",
        "connect",
        2,
    ), record
    assert run.exit_code == 1
    fault_lab.assert_healthy_ok(run)


def test_keadm_failures_are_never_retried(fault_lab: FaultLab) -> None:
    bad = NODES[0]
    config = fault_lab.config(
        [fault_lab.entry(bad, cmd="{{.cmd}} --token=invalid"), *fault_lab.healthy()]
    )

    run = fault_lab.run(config, "keadm-fails", "--retry-delay", "0.1")

    record = run.record(bad)
    assert (record["status"], record["stage"], record["attempts"]) == ("failed", "keadm", 1)
    assert len(fault_lab.lab.join_records(bad)) == 1
