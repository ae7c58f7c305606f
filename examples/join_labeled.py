"""Join only the nodes that carry a label.

    python examples/join_labeled.py batch.yaml site=north

Composes kenornir's pieces by hand: the config, the packages, a Nornir filter on host data,
and the join_node task; then prints each node's outcome.
"""

import sys

from nornir.core.filter import F

import kenornir
from kenornir.batch import RunOptions, prepare
from kenornir.config import load_config


def main(config_path: str, label: str) -> int:
    key, _, value = label.partition("=")
    batch = load_config(config_path)
    nr = kenornir.init_nornir(batch)
    chosen = nr.filter(F(**{f"labels__{key}": value}))
    packages = prepare(batch, RunOptions())
    results = chosen.run(task=kenornir.tasks.join_node, packages=packages)
    for name, result in sorted(results.items()):
        outcome = result[0].result
        print(f"{name}: {outcome.status} {outcome.reason or ''}".rstrip())
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
