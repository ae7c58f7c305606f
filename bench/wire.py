"""Bytes on the wire per node, counted by the kernel: nftables rules on the controller's output."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from types import TracebackType

from tests.lab.node import LabNode


class WireError(RuntimeError):
    """nft is missing or refused the counting rules."""


class WireCounters:
    """One nft counter per node: the IP bytes (headers included) of every packet this machine
    sends to the node's address and SSH port, i.e. everything a contender sends the node.

    Use as a context manager: the table exists inside the `with` and is deleted on the way out.
    """

    def __init__(self, table: str, nodes: Sequence[LabNode]) -> None:
        self.table = table
        self.nodes = nodes

    def __enter__(self) -> WireCounters:
        rules = "\n".join(
            f"add rule inet {self.table} out ip daddr {node.address} tcp dport {node.port}"
            f' counter comment "{node.name}"'
            for node in self.nodes
        )
        _nft(
            f"add table inet {self.table}\n"
            f"add chain inet {self.table} out {{ type filter hook output priority 0; }}\n"
            f"{rules}\n"
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _nft(f"delete table inet {self.table}\n")

    def read(self) -> dict[str, int]:
        """Bytes sent to each node since the table was made, by node name."""
        listing = json.loads(_nft_output(["-j", "list", "table", "inet", self.table]))
        sent = {}
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule is None or "comment" not in rule:
                continue
            for expression in rule["expr"]:
                if "counter" in expression:
                    sent[rule["comment"]] = int(expression["counter"]["bytes"])
        return sent


def _nft(script: str) -> None:
    try:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)
    except FileNotFoundError:
        raise WireError("nft is not installed (apt-get install nftables)") from None
    except subprocess.CalledProcessError as error:
        raise WireError(f"nft refused the counters: {error.stderr.strip()}") from None


def _nft_output(arguments: list[str]) -> str:
    return subprocess.run(["nft", *arguments], text=True, check=True, capture_output=True).stdout
