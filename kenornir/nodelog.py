"""Per-node loggers: what a node's tasks say goes to that node's log, never to the terminal."""

from __future__ import annotations

import logging

NODE_LOGGER_PREFIX = "kenornir.node"


def node_logger(node_name: str) -> logging.Logger:
    """The logger whose records end up in `<run dir>/<node>.log` (see report.py).

    Every node's logger is a direct child of `kenornir.node`, whatever its name: a dot in a
    name would make `edge.1`'s logger a child of `edge`'s, whose handler (writing edge.log,
    masking edge's secrets) would then get `edge.1`'s lines too.
    """
    return logging.getLogger(f"{NODE_LOGGER_PREFIX}.{_dotless(node_name)}")


def _dotless(node_name: str) -> str:
    """The node name without dots, still readable and still unique: `.` and `%` are
    percent-encoded (`edge.1` is `edge%2E1`)."""
    return node_name.replace("%", "%25").replace(".", "%2E")
