"""Lab sites: nodes in a network namespace of their own that this machine has no route to,
reached only through the site's bastion, as kenornir reaches them with ssh.proxyJump."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kenornir.batch import RunOptions, Selection, run_batch
from tests.lab import Lab, LabError, LabFactory, LabSite, leased_subnet
from tests.lab import node as nodes_
from tests.lab.node import read_banner
from tests.lab.site import plan_site

pytestmark = pytest.mark.lab

REPO = Path(__file__).parent.parent


def network_namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout


def links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout


def running(pid: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, TypeError):
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode():
                found.append(int(entry.name))
        except (OSError, UnicodeDecodeError):
            continue
    return [pid for pid in found if running(pid)]


def assert_removed(site: LabSite) -> None:
    assert site.netns not in network_namespaces()
    assert site.host_veth not in links()
    assert not site.netns_path.exists()


def test_site_nodes_answer_only_inside_their_site(make_lab: LabFactory) -> None:
    lab = make_lab(nodes=4, sites={"north": 3})
    site = lab.site("north")
    plain = lab.nodes[0]
    assert site.node_names == ("node-002", "node-003", "node-004")
    assert [node.site for node in lab.nodes] == [None, "north", "north", "north"]
    assert lab.sites == {"north": site}
    assert site.bastion_address.startswith(("198.18.", "198.19."))

    for name in site.node_names:
        node = lab.node(name)
        # This machine's loopback has the address too, but nothing listens there: no route.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((node.address, node.port), timeout=5).close()
        assert f"{node.address}:22" in lab.exec(name, "ss -Htln").stdout
        assert lab.exec(name, "echo hi").stdout == "hi\n"
    banner = read_banner(site.bastion_address, site.bastion_port, timeout=5)
    assert banner is not None and banner.startswith("SSH-2.0-")
    assert read_banner(plain.address, plain.port, timeout=5) is not None
    assert all(status.answering for status in lab.status())
    assert lab.bastion_host_key("north").startswith("ssh-ed25519 ")


def test_kenornir_joins_site_nodes_through_the_bastion(
    make_lab: LabFactory, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    lab = make_lab(nodes=4, sites={"north": 3})
    site = lab.site("north")
    offline_dir = next(iter(lab_packages.values())).parent.parent
    inventory = lab.write_inventory(tmp_path / "lab.yaml", offline_dir)
    config = yaml.safe_load(inventory.read_text())
    jumps = [entry["ssh"].get("proxyJump") for entry in config["nodes"]]
    assert jumps[0] is None
    # One anchored definition that the site's nodes share.
    assert jumps[1] is jumps[2] is jumps[3]
    assert jumps[1] == [
        {
            "ip": site.bastion_address,
            "port": 22,
            "username": "root",
            "auth": {"type": "privateKey", "privateKeyAuth": {"privateKeyPath": str(lab.key_path)}},
        }
    ]

    options = RunOptions(
        known_hosts=tmp_path / "known_hosts", cache_dir=tmp_path / "cache", run_dir=tmp_path / "run"
    )
    report: dict[str, Any] = run_batch(inventory, Selection(), options, stream=None).report
    outcomes = {record["node"]: (record["status"], record["reason"]) for record in report["nodes"]}
    assert outcomes == {node.name: ("ok", None) for node in lab.nodes}
    for name in site.node_names:
        assert lab.join_records(name), name
    assert lab.bastion_logins("north") >= 1
    assert lab.bastion_channels("north") >= len(site.node_names)
    bastion_key = lab.bastion_host_key("north").split()[1]
    assert bastion_key in (tmp_path / "known_hosts").read_text()


def test_a_stopped_bastion_leaves_its_nodes_running(make_lab: LabFactory) -> None:
    lab = make_lab(nodes=2, sites={"north": 1})
    lab.stop_bastion("north")
    assert lab.bastion_banner("north") is None
    assert all(status.answering for status in lab.status())
    lab.start_bastion("north")
    assert lab.bastion_banner("north") is not None
    # Node operations work on site nodes like any other.
    lab.restart_sshd("node-002")
    assert all(status.answering for status in lab.status())


def test_down_removes_the_sites_processes_namespace_and_veth(make_lab: LabFactory) -> None:
    lab = make_lab(nodes=3, sites={"north": 1, "south": 1})
    sites = list(lab.sites.values())
    assert [site.node_names for site in sites] == [("node-002",), ("node-003",)]
    assert len({site.bastion_address for site in sites}) == 2
    state = Lab(lab.state_dir)  # as `python -m tests.lab down` would, from the state file
    assert state.sites == lab.sites
    holders = [state._sites[site.name].holder_pid for site in sites]
    assert all(running(pid) for pid in holders)
    state.down()
    for site in sites:
        assert_removed(site)
    assert not any(running(pid) for pid in holders)
    assert not (lab.state_dir / "lab.json").exists()


def test_down_after_a_failed_up_removes_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(holder: subprocess.Popen[bytes], node_dir: Path) -> None:
        raise RuntimeError(f"{node_dir.name}: simulated holder failure")

    with leased_subnet() as subnet:
        lab = Lab(tmp_path / "state", subnet)
        monkeypatch.setattr(nodes_, "wait_holder_ready", fail)
        with pytest.raises(RuntimeError, match="simulated"):
            lab.up(2, sites={"north": 1})
        monkeypatch.undo()
        assert not lab.sites and not lab.nodes
        # The bastion's holder, the veth and the namespace had been made: all gone again.
        assert_removed(plan_site(subnet, 0, "north", lab.state_dir))
        assert processes_mentioning(str(lab.state_dir)) == []
        assert not (lab.state_dir / "lab.json").exists()


def test_a_namespace_in_the_way_is_named_and_left_alone(tmp_path: Path) -> None:
    with leased_subnet() as subnet:
        netns = f"kn-{subnet.replace('.', '-')}-north"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            lab = Lab(tmp_path / "state", subnet)
            with pytest.raises(LabError, match=f"network namespace {netns} exists already"):
                lab.up(2, sites={"north": 1})
            assert netns in network_namespaces()  # not this lab's to remove
            assert not lab.nodes
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=True)


def test_sites_are_checked_before_anything_starts(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "state", "127.0.250")
    with pytest.raises(ValueError, match="the sites hold 3 nodes; the lab has 2"):
        lab.up(2, sites={"north": 3})
    with pytest.raises(ValueError, match="site name must be"):
        lab.up(2, sites={"North Site": 1})
    assert not lab.nodes


def lab_cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", *args, "--state-dir", str(state_dir)],
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_cli_up_status_down_with_a_site(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with leased_subnet() as subnet:
        up = lab_cli(
            *("up", "--nodes", "3", "--site", "north:2", "--subnet", subnet),
            *("--package-size-mb", "1", "--inventory", str(tmp_path / "lab.yaml")),
            state_dir=state_dir,
        )
        try:
            assert up.returncode == 0, up.stderr
            site = Lab(state_dir).site("north")
            assert f"bastion root@{site.bastion_address}:22" in up.stdout
            table = [line.split() for line in up.stdout.splitlines() if line.startswith("node-")]
            assert [row[4] for row in table] == ["-", "north", "north"]

            status = lab_cli("status", state_dir=state_dir)
            assert status.returncode == 0, status.stdout + status.stderr
            assert "3/3 nodes answering" in status.stdout
            assert "1/1 bastions answering" in status.stdout
        finally:
            down = lab_cli("down", state_dir=state_dir)
        assert down.returncode == 0, down.stderr
        assert "1 site(s) removed" in down.stdout
        assert_removed(site)
        assert lab_cli("status", state_dir=state_dir).returncode == 1
