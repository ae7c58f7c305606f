"""The README's captured end of a lab run: made by running kenornir on a lab, checked by a test.

`python -m tests.readme_example --write` (or `make readme-example`) starts a small lab of its
own, runs the example batch and rewrites the block between the markers in README.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from tests.batch_configs import node_entry, offline_dir_of, run_python, write_config
from tests.lab import Lab, ensure_packages, leased_subnet

README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- lab-run:start -->", "<!-- lab-run:end -->"
EXAMPLE_NODES = 6
_DURATION = re.compile(r"\b\d+\.\ds\b")
_LEASED_SUBNET = re.compile(r"\b127\.0\.\d{3}\.")  # leased labs use 127.0.100-249


def example_config(lab: Lab, packages: dict[str, Path], workdir: Path) -> Path:
    """Six lab nodes: four join, one is refused by the cloud (bad token), one is switched off."""
    names = [node.name for node in lab.nodes[: EXAMPLE_NODES - 1]]
    nodes = [node_entry(lab, name, cmd="{{.cmd}} --token={{.token}}") for name in names]
    nodes[2]["keadmCmd"] = "{{.cmd}} --token=invalid"
    nodes.append(node_entry(lab, "node-006", address=f"{lab.subnet}.254"))
    return write_config(workdir / "example.yaml", nodes, offline_dir_of(packages))


def capture(lab: Lab, packages: dict[str, Path], workdir: Path) -> str:
    """The terminal at the end of the example run: the summary table, stable paths."""
    config = example_config(lab, packages, workdir)
    for node in lab.nodes[: EXAMPLE_NODES - 1]:
        lab.exec(node.name, "rm -rf /tmp/kubeedge")
    argv = ["-m", "kenornir", config, "--no-progress", "--workers", "1"]
    result = run_python(argv, workdir)
    summary = result.stdout[result.stdout.index("NODE ") :]
    summary = re.sub(r"kenornir-runs/\S+", "kenornir-runs/20261127T210000Z", summary)
    return f"$ kenornir example.yaml\n...\n{summary}$ echo $?\n{result.returncode}\n"


def comparable(text: str) -> str:
    """Durations and the lab's subnet differ from run to run; everything else must match."""
    return _LEASED_SUBNET.sub("127.0.XXX.", _DURATION.sub("0.0s", text))


def readme_block(readme: str = "") -> str:
    text = readme or README.read_text("utf-8")
    inside = text[text.index(START) + len(START) : text.index(END)]
    return inside.strip().removeprefix("```").removesuffix("```").strip() + "\n"


def write_readme(captured: str) -> None:
    text = README.read_text("utf-8")
    before, after = text[: text.index(START) + len(START)], text[text.index(END) :]
    README.write_text(f"{before}\n```\n{captured}```\n{after}", "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite README.md's block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary, leased_subnet() as subnet:
        workdir = Path(temporary)
        packages = ensure_packages(workdir / "packages", binary_size=4 * 2**20)
        lab = Lab(workdir / "lab", subnet)
        try:
            lab.up(EXAMPLE_NODES - 1, arch_mix=True)
            captured = capture(lab, packages, workdir)
        finally:
            lab.down()
    if args.write:
        write_readme(captured)
    sys.stdout.write(captured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
