"""The local edge lab: sshd nodes in mount namespaces, the fake keadm and its packages."""

from tests.lab.lab import DEFAULT_TMP_SIZE_MB, Lab, LabError, LabFactory, NodeStatus
from tests.lab.node import ARCH_CYCLE, UNAME_TO_GOARCH, LabNode
from tests.lab.packages import build_packages, ensure_packages, keadm_member_digest
from tests.lab.records import JOIN_LOG, JoinRecord, parse_join_records
from tests.lab.site import LabSite
from tests.lab.subnets import DEFAULT_SUBNET, leased_subnet

__all__ = [
    "ARCH_CYCLE",
    "DEFAULT_SUBNET",
    "DEFAULT_TMP_SIZE_MB",
    "JOIN_LOG",
    "UNAME_TO_GOARCH",
    "JoinRecord",
    "Lab",
    "LabError",
    "LabFactory",
    "LabNode",
    "LabSite",
    "NodeStatus",
    "build_packages",
    "ensure_packages",
    "keadm_member_digest",
    "leased_subnet",
    "parse_join_records",
]
