"""README.md tells the truth: its captured lab run is what the current code prints, and its
Python snippets run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.batch_configs import node_entry, offline_dir_of, run_python, write_config
from tests.lab import Lab
from tests.readme_example import EXAMPLE_NODES, capture, comparable, readme_block


@pytest.mark.lab
def test_readme_lab_run_matches_the_current_output(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    assert len(lab.nodes) >= EXAMPLE_NODES - 1
    fresh = capture(lab, lab_packages, tmp_path)
    assert comparable(readme_block()) == comparable(fresh), (
        "README.md's lab run is stale: run `make readme-example` and commit README.md"
    )


def composing_blocks() -> list[str]:
    """The python blocks of README's "Composing tasks in Python" section, in order."""
    text = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    section = text.split("## Composing tasks in Python", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.mark.lab
def test_readme_composing_snippets_run_on_the_lab(
    lab: Lab, lab_packages: dict[str, Path], tmp_path: Path
) -> None:
    over_batch, over_any_inventory = composing_blocks()
    north, south, sudo_node = (node.name for node in lab.nodes[3:6])
    for name in (north, south):
        lab.exec(name, "rm -rf /tmp/kubeedge")
    nodes = [
        node_entry(lab, north, cmd="join --token={{.token}}", extra={"labels": {"site": "north"}}),
        node_entry(lab, south, cmd="join --token={{.token}}", extra={"labels": {"site": "south"}}),
    ]
    config = write_config(tmp_path / "batch.yaml", nodes, offline_dir_of(lab_packages))
    data = yaml.safe_load(config.read_text())
    data["maxRunNum"] = 7
    config.write_text(yaml.safe_dump(data))
    (tmp_path / "batch.py").write_text(over_batch)
    joined = run_python([tmp_path / "batch.py"], tmp_path)
    assert joined.stdout == f"{north} ok\n", joined.stderr

    node = lab.node(sudo_node)
    extras = {"key_file": str(lab.key_path), "sudo": True}
    hosts = {
        "edge-1": {
            "hostname": node.address,
            "port": node.port,
            "username": lab.edge_user,
            "connection_options": {"kenornir_ssh": {"extras": extras}},
        }
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "rootCA.crt").write_text("lab CA\n")
    lab.exec(sudo_node, "rm -rf /etc/kubeedge/ca")
    (tmp_path / "any.py").write_text(over_any_inventory)
    pushed = run_python([tmp_path / "any.py"], tmp_path)
    assert " up " in pushed.stdout and pushed.returncode == 0, pushed.stderr
    assert lab.exec(sudo_node, "cat /etc/kubeedge/ca/rootCA.crt").stdout == "lab CA\n"
