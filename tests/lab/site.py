"""Lab sites: nodes in a network namespace of their own, reachable only through the site's
bastion, an sshd on the namespace's end of a veth pair whose other end is on this machine.

A site node listens on its usual 127.X.Y.Z address, but on the site namespace's loopback, so
the same address on this machine's loopback refuses connections: the controller has no route
to it, as to an edge site behind a jump host. The bastion runs inside the site namespace on
198.18.B.2 (RFC 2544's benchmark range, 198.18.0.0/15, which no real network uses), reachable
from this machine through the veth's host end 198.18.B.1.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from hashlib import blake2s
from pathlib import Path
from typing import Any

from tests.lab.node import SSH_PORT, Connect, LabNode

NETNS_DIR = Path("/run/netns")
_VETH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
# Each lab subnet 127.X.T owns the /30s T*128 .. T*128+127 of the range: labs on different
# third octets never share a veth (as they never share a node address, see subnets.py).
SITES_PER_LAB = 128
_SITE_NAME = re.compile(r"[a-z][a-z0-9]{0,15}\Z")
BASTION_TMP_MB = 64
# OpenSSH logs nothing about direct-tcpip channels at VERBOSE; LogVerbose raises just this
# function's debug line ("originator ... target ...") to the log, one per channel opened.
DIRECT_TCPIP_FUNCTION = "server_request_direct_tcpip()"
BASTION_SSHD_OPTIONS = f"""\
# A site's bastion: one login per client, then a direct-tcpip channel per node it reaches.
LogLevel VERBOSE
LogVerbose *:{DIRECT_TCPIP_FUNCTION}:*
AllowTcpForwarding yes
"""
_CLONE_NEWNET = 0x40000000


class SiteError(RuntimeError):
    """A site's network could not be made (a name or address taken, no iproute2)."""


@dataclass(frozen=True)
class LabSite:
    """A site as tests see it: its nodes, and the bastion that reaches them."""

    name: str
    netns: str
    bastion_address: str
    bastion_port: int
    node_names: tuple[str, ...]
    bastion_dir: Path
    host_veth: str
    host_address: str  # the veth's end on this machine

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def bastion_name(self) -> str:
        return f"bastion-{self.name}"

    @property
    def bastion_node(self) -> LabNode:
        """The bastion as a lab node (its holder and sshd are started like a node's). Its site
        is None: LabNode.site names the bastion a node is reached through, and the bastion
        itself is reached from this machine (through the veth), though it runs in the site."""
        return LabNode(
            self.bastion_name, self.bastion_address, self.bastion_port, "x86_64", BASTION_TMP_MB
        )


@dataclass
class SiteRecord:
    """What the lab made for a site, so `down` removes exactly that (also after a failed up)."""

    site: LabSite
    netns_created: bool = False
    veth_created: bool = False
    holder_pid: int | None = None
    sshd_pid: int | None = None

    def to_state(self) -> dict[str, Any]:
        site = {**asdict(self.site), "bastion_dir": str(self.site.bastion_dir)}
        site["node_names"] = list(self.site.node_names)
        return {
            "site": site,
            "netns_created": self.netns_created,
            "veth_created": self.veth_created,
            "holder_pid": self.holder_pid,
            "sshd_pid": self.sshd_pid,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SiteRecord:
        site = dict(state["site"])
        site["bastion_dir"] = Path(site["bastion_dir"])
        site["node_names"] = tuple(site["node_names"])
        return cls(
            LabSite(**site),
            state["netns_created"],
            state["veth_created"],
            state["holder_pid"],
            state["sshd_pid"],
        )


def validate_sites(sites: Mapping[str, int], nodes: int) -> None:
    """Site names are short lowercase words; the sites hold at most the lab's nodes."""
    if len(sites) > SITES_PER_LAB:
        raise ValueError(f"a lab has at most {SITES_PER_LAB} sites, not {len(sites)}")
    for name, count in sites.items():
        if not _SITE_NAME.match(name):
            raise ValueError(f"site name must be [a-z][a-z0-9]{{0,15}}, not {name!r}")
        if count < 1:
            raise ValueError(f"site {name!r} needs at least one node, not {count}")
    if sum(sites.values()) > nodes:
        raise ValueError(f"the sites hold {sum(sites.values())} nodes; the lab has {nodes}")


def site_of_each_node(nodes: int, sites: Mapping[str, int]) -> list[str | None]:
    """The site of node index 0..nodes-1: the LAST sum(counts) nodes, in the sites' order
    (nodes=6, {"north": 2, "south": 2}: node-003/004 north, node-005/006 south)."""
    placed: list[str | None] = [None] * (nodes - sum(sites.values()))
    for name, count in sites.items():
        placed.extend([name] * count)
    return placed


def plan_site(subnet: str, index: int, name: str, state_dir: Path) -> LabSite:
    """Names and addresses for the lab's index-th site (nothing is created yet)."""
    netns = f"kn-{subnet.replace('.', '-')}-{name}"
    third_octet = int(subnet.split(".")[2])
    block = _VETH_RANGE.network_address + 4 * (third_octet * SITES_PER_LAB + index)
    # Interface names have at most 15 characters; a hash of the (unique) namespace name fits.
    digest = blake2s(netns.encode(), digest_size=5).hexdigest()
    return LabSite(
        name=name,
        netns=netns,
        bastion_address=str(block + 2),
        bastion_port=SSH_PORT,
        node_names=(),
        bastion_dir=state_dir / "sites" / name / "bastion",
        host_veth=f"kn{digest}h",
        host_address=str(block + 1),
    )


def netns_veth(site: LabSite) -> str:
    """The veth's end inside the site namespace."""
    return site.host_veth[:-1] + "n"


def create_network(record: SiteRecord, on_progress: Callable[[], object]) -> None:
    """The site namespace (lo up) and the veth pair with its /30; on_progress runs after each
    thing made, so it is recorded before anything else can fail.

    Raises:
        SiteError: the namespace, veth name or /30 is in use already; nothing was made then.
    """
    site = record.site
    _check_free(site)
    _ip("netns", "add", site.netns)
    record.netns_created = True
    on_progress()
    _ip("-n", site.netns, "link", "set", "lo", "up")
    peer = ("peer", "name", netns_veth(site), "netns", site.netns)
    _ip("link", "add", site.host_veth, "type", "veth", *peer)
    record.veth_created = True
    on_progress()
    _ip("addr", "add", f"{site.host_address}/30", "dev", site.host_veth)
    _ip("link", "set", site.host_veth, "up")
    _ip("-n", site.netns, "addr", "add", f"{site.bastion_address}/30", "dev", netns_veth(site))
    _ip("-n", site.netns, "link", "set", netns_veth(site), "up")


def remove_network(record: SiteRecord) -> None:
    """Delete the veth pair (its host end takes the other with it) and the namespace, if this
    lab made them. Call it once no process is left inside the namespace."""
    site = record.site
    if record.veth_created:
        if _exists("link", site.host_veth):
            _ip("link", "del", site.host_veth)
        record.veth_created = False
    if record.netns_created:
        if site.netns_path.exists():
            _ip("netns", "del", site.netns)
        record.netns_created = False


def netns_connector(netns: str) -> Connect:
    """socket.create_connection, but from inside the namespace: node.read_banner's connect.

    A socket belongs to the namespace of the thread that made it, so a short-lived thread
    enters the namespace (setns affects only itself) and makes the socket; it is used here.
    """

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connection = _socket_in(netns)
        try:
            connection.settimeout(timeout)
            connection.connect(address)
        except BaseException:
            connection.close()
            raise
        return connection

    return connect


def bastion_logins(site: LabSite) -> int:
    """Logins the bastion's sshd accepted (each line of its log, written with -e)."""
    return _log_text(site).count("Accepted publickey")


def bastion_channels(site: LabSite) -> int:
    """direct-tcpip channels the bastion's sshd opened ("originator ..., target ..." lines)."""
    return sum(
        DIRECT_TCPIP_FUNCTION in line and " target " in line
        for line in _log_text(site).splitlines()
    )


def _log_text(site: LabSite) -> str:
    try:
        return (site.bastion_dir / "sshd.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _socket_in(netns: str) -> socket.socket:
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            with (NETNS_DIR / netns).open("rb") as namespace:
                if _libc().setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns into network namespace {netns} failed")
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=make, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def _libc() -> ctypes.CDLL:
    # os.setns arrived in Python 3.12; this project supports 3.11.
    return ctypes.CDLL(None, use_errno=True)


def _check_free(site: LabSite) -> None:
    if site.netns_path.exists():
        raise SiteError(
            f"network namespace {site.netns} exists already (a lab left running? "
            f"`python -m tests.lab down` with its state dir, or `ip netns del {site.netns}`)"
        )
    if _exists("link", site.host_veth):
        raise SiteError(f"interface {site.host_veth} exists already (another lab's site?)")
    block = ipaddress.IPv4Network(f"{site.host_address}/30", strict=False)
    for interface in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for address in interface.get("addr_info", []):
            taken = ipaddress.IPv4Network(
                f"{address['local']}/{address['prefixlen']}", strict=False
            )
            if taken.overlaps(block):
                raise SiteError(
                    f"site {site.name}'s veth {block} overlaps {address['local']}"
                    f"/{address['prefixlen']} on {interface['ifname']} (another lab's site?)"
                )


def _exists(kind: str, name: str) -> bool:
    shown = subprocess.run(["ip", kind, "show", name], capture_output=True, check=False)
    return shown.returncode == 0


def _ip(*arguments: str) -> str:
    try:
        result = subprocess.run(
            ["ip", *arguments], capture_output=True, text=True, check=False, timeout=30
        )
    except FileNotFoundError:
        raise SiteError("lab sites need iproute2's ip (apt-get install iproute2)") from None
    if result.returncode != 0:
        raise SiteError(f"ip {' '.join(arguments)}: {result.stderr.strip()}")
    return result.stdout
