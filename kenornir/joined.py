"""Whether a node is joined already, and what --rejoin runs first on one that is.

Real keadm refuses to join a node whose management directory is not clean, and what makes it
so is the edge node's config, edgecore.yaml: a node that joined last month is not to be joined
again by accident (a re-run of a growing fleet's config), but skipped, or reset first when the
operator asks for it.
"""

from __future__ import annotations

import re

EDGECORE_CONFIG = "/etc/kubeedge/config/edgecore.yaml"
ALREADY_JOINED = f"already joined ({EDGECORE_CONFIG} exists)"
# keadm split `reset` into `reset cloud` and `reset edge` in v1.17; plain `reset` is refused
# from v1.22 on.
_RESET_EDGE_SINCE = (1, 17)


def is_join(keadm_cmd: str) -> bool:
    """Whether the rendered keadmCmd joins the node (`join ...`)."""
    words = keadm_cmd.split()
    return bool(words) and words[0] == "join"


def reset_before_rejoin(keadm_version: str | None) -> str:
    """The keadm command that unjoins a node without asking: `reset edge --force`, or
    `reset --force` for a keadm older than v1.17 (None: the node's own keadm, assumed new)."""
    found = re.match(r"v?(\d+)\.(\d+)", keadm_version or "")
    if found is not None and (int(found[1]), int(found[2])) < _RESET_EDGE_SINCE:
        return "reset --force"
    return "reset edge --force"
