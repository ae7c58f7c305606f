"""Command line interface: `kenornir` and `python -m kenornir`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kenornir import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kenornir",
        description="Join many KubeEdge edge nodes at once from one keadm batch config.",
    )
    parser.add_argument("--version", action="version", version=f"kenornir {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0
