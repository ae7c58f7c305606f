"""Rerun the nodes that did not end ok in the last run.

    python examples/rerun_failed.py batch.yaml [RUN_DIR]

The same as `kenornir batch.yaml --rerun-failed`, spelled out: read the last run's report (or its
events.jsonl when the run died), filter the Nornir hosts by name, run join_node on them.
"""

import sys
from pathlib import Path

from nornir.core.filter import F

import kenornir
from kenornir.batch import RunOptions, prepare
from kenornir.config import load_config
from kenornir.report import failed_nodes_of


def main(config_path: str, run_dir: str = "kenornir-runs/latest") -> int:
    names = failed_nodes_of(Path(run_dir))
    if not names:
        print(f"nothing to rerun: every node of {run_dir} ended ok")
        return 0
    batch = load_config(config_path)
    nr = kenornir.init_nornir(batch)
    results = nr.filter(F(name__in=names)).run(
        task=kenornir.tasks.join_node, packages=prepare(batch, RunOptions())
    )
    for name, result in sorted(results.items()):
        print(f"{name}: {result[0].result.status}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
