"""README.md tells the truth: its captured lab run is what the current code prints."""

from __future__ import annotations

from pathlib import Path

import pytest

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
