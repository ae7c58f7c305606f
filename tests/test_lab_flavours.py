"""Lab knobs for issue 13's tests: BusyBox nodes, a private /etc/kubeedge, cut SSH sessions."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.lab import Lab, LabFactory

pytestmark = pytest.mark.lab

# What the upload stream relies on: `head -c 2` leaves the rest of a pipe to the next reader.
OVER_READ = "printf abcd | { head -c 2 >/dev/null; cat; }"


def test_a_busybox_node_has_busybox_tools_that_over_read_a_pipe(make_lab: LabFactory) -> None:
    lab = make_lab(nodes=2, busybox_nodes=1)
    coreutils, busybox = lab.nodes
    assert (coreutils.flavour, busybox.flavour) == ("coreutils", "busybox")
    for tool in ("head", "stat", "tar"):
        assert "BusyBox" in lab.exec(busybox.name, f"{tool} --help 2>&1 || true").stdout
        assert "BusyBox" not in lab.exec(coreutils.name, f"{tool} --help 2>&1 || true").stdout
    assert lab.exec(coreutils.name, OVER_READ).stdout == "cd"
    assert lab.exec(busybox.name, OVER_READ).stdout == ""
    # Over SSH too: what kenornir's commands see.
    over_ssh = subprocess.run(
        lab.ssh_command(busybox.name, "head --help 2>&1 | head -n 1"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "BusyBox" in over_ssh.stdout


def test_etc_kubeedge_is_private_to_each_node(lab: Lab) -> None:
    first, second = (node.name for node in lab.nodes[:2])
    lab.exec(first, "mkdir -p /etc/kubeedge/ca && echo mine >/etc/kubeedge/ca/lab-probe")
    assert lab.exec(first, "cat /etc/kubeedge/ca/lab-probe").stdout == "mine\n"
    assert lab.exec(second, "test -e /etc/kubeedge/ca/lab-probe").returncode != 0
    assert not Path("/etc/kubeedge/ca/lab-probe").exists()
    lab.exec(first, "rm -rf /etc/kubeedge/ca")


def test_cut_sessions_drops_live_connections_and_new_ones_still_work(lab: Lab) -> None:
    name = lab.nodes[0].name
    live = subprocess.Popen(
        lab.ssh_command(name, "sleep 30"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while "sleep 30" not in lab.processes(name).values():
            assert time.monotonic() < deadline, "the session never started its command"
            time.sleep(0.1)
        assert lab.cut_sessions(name) > 0
        assert live.wait(timeout=10) != 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    again = subprocess.run(
        lab.ssh_command(name, "echo again"), capture_output=True, text=True, timeout=30, check=False
    )
    assert again.stdout == "again\n"
