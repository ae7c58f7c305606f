"""kenornir: join many KubeEdge edge nodes at once, keadm batch on Nornir."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "init_nornir", "nornir_settings", "tasks"]


def __getattr__(name: str) -> Any:
    # Lazy, so `kenornir --help` does not pay for importing nornir and paramiko.
    if name in ("init_nornir", "nornir_settings"):
        return getattr(importlib.import_module("kenornir.batch"), name)
    if name == "tasks":
        return importlib.import_module("kenornir.tasks")
    raise AttributeError(f"module 'kenornir' has no attribute {name!r}")
