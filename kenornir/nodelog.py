"""Per-node loggers: what a node's tasks say goes to that node's log, never to the terminal."""

from __future__ import annotations

import logging

NODE_LOGGER_PREFIX = "kenornir.node"


def node_logger(node_name: str) -> logging.Logger:
    """The logger whose records end up in `<run dir>/<node>.log` (see report.py)."""
    return logging.getLogger(f"{NODE_LOGGER_PREFIX}.{node_name}")
