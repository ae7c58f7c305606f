"""The exit codes of `kenornir`, one definition for the CLI, the batch and the report."""

EXIT_OK = 0  # every selected node succeeded (ok, or skipped as already done)
EXIT_NODES_FAILED = 1  # at least one node failed or was unreachable
EXIT_USAGE = 2  # usage errors and invalid configs: nothing was contacted
EXIT_PREPARE_FAILED = 3  # controller-side preparation failed: no node was touched
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
