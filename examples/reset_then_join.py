"""A composed task: reset a node, then join it again.

    python examples/reset_then_join.py batch.yaml NODE

kenornir's tasks are building blocks: run_keadm runs `reset edge` (upstream's `yes |` included)
with the keadm a previous run left on the node, then join_node brings the node back with its own
rendered join command.
"""

import sys

from nornir.core.filter import F
from nornir.core.task import Result, Task

import kenornir
from kenornir.batch import RunOptions, prepare
from kenornir.config import STAGING_DIR, load_config
from kenornir.tasks import connect, join_node, run_keadm


def reset_then_join(task: Task, packages: dict) -> Result:
    task.run(task=connect)
    task.run(task=run_keadm, workdir=STAGING_DIR, keadm_cmd="reset edge")
    joined = task.run(task=join_node, packages=packages)[0]
    return Result(host=task.host, result=joined.result, failed=joined.failed)


def main(config_path: str, node: str) -> int:
    batch = load_config(config_path)
    nr = kenornir.init_nornir(batch)
    results = nr.filter(F(name=node)).run(
        task=reset_then_join, packages=prepare(batch, RunOptions())
    )
    first = results[node][0]
    if first.exception is not None:  # the reset step failed; join_node records its own failures
        print(f"{node}: reset failed: {results[node][-1].exception}")
    else:
        print(f"{node}: reset, then join: {first.result.status}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
