"""The lab: N fake edge nodes on this machine, each a real sshd in its own mount namespace;
nodes of a site also in the site's network namespace, behind its bastion (site.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from tests.lab import node as nodes_
from tests.lab import site as site_
from tests.lab.accounts import EDGE_USER, SUDO_LOG, SUDO_PASSWORD_USER, LabAccounts
from tests.lab.host import prepare_host
from tests.lab.inventory import write_lab_inventory
from tests.lab.node import ARCH_CYCLE, SSH_PORT, Flavour, LabNode
from tests.lab.records import EDGECORE_CONFIG, JOIN_LOG, JoinRecord, parse_join_records
from tests.lab.relay import (
    RELAY_PORT,
    EdgeLink,
    LinkCounters,
    Route,
    is_relay,
    read_counters,
    start_relay,
)
from tests.lab.site import LabSite, SiteRecord
from tests.lab.subnets import DEFAULT_SUBNET, address_in_use, node_address, validate_subnet

DEFAULT_TMP_SIZE_MB = 512
STATE_FILE = "lab.json"
_BANNER_WAIT_SECONDS = 20.0

log = logging.getLogger(__name__)


class LabError(RuntimeError):
    """The lab could not do what was asked (a node did not start, an unknown node name)."""


@dataclass(frozen=True)
class NodeStatus:
    """One node's answer to a status check: a TCP connect and its SSH banner."""

    node: LabNode
    banner: str | None

    @property
    def answering(self) -> bool:
        return self.banner is not None


@dataclass
class _NodeProcesses:
    node: LabNode
    holder_pid: int | None = None
    sshd_pid: int | None = None


class Lab:
    """A lab in `state_dir` on loopback `subnet` (127.X.Y); node i listens on <subnet>.<i+1>:22.

    The state dir records the PIDs the lab started (lab.json), its key, password and node files,
    so `down` can stop it from any process. A lab already recorded there is picked up.
    With an edge link, clients reach node i through the relay on <subnet>.<i+1>:2222.
    Site nodes listen on their address inside their site's network namespace only; clients
    reach them through the site's bastion (lab.site(name).bastion_address:22).
    """

    def __init__(self, state_dir: Path, subnet: str | None = None) -> None:
        self.state_dir = state_dir.absolute()
        self.accounts = LabAccounts(self.state_dir)
        self._records: dict[str, _NodeProcesses] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.inventory_path: Path | None = None
        self.edge_link: EdgeLink | None = None
        self._relay_pid: int | None = None
        self._sites: dict[str, SiteRecord] = {}
        recorded_subnet = self._load()
        self.subnet = subnet or recorded_subnet or DEFAULT_SUBNET
        validate_subnet(self.subnet)

    # What tests use to reach the nodes.

    @property
    def nodes(self) -> list[LabNode]:
        return [record.node for record in self._records.values()]

    @property
    def key_path(self) -> Path:
        return self.accounts.key_path

    @property
    def password(self) -> str:
        return self.accounts.password

    @property
    def edge_user(self) -> str:
        """A user with sudo that needs no password (NOPASSWD)."""
        return EDGE_USER

    @property
    def sudo_password_user(self) -> str:
        """A user whose sudo asks for the lab password, every time."""
        return SUDO_PASSWORD_USER

    def sudo_log(self, name: str) -> str:
        """What the node's sudo logged (a COMMAND= line per command it ran)."""
        return self.exec(name, f"cat {SUDO_LOG} 2>/dev/null || true").stdout

    @property
    def client_nodes(self) -> list[LabNode]:
        """The nodes as clients reach them: at the relay's port when the lab has an edge link."""
        return [self.client_node(node.name) for node in self.nodes]

    def node(self, name: str) -> LabNode:
        return self._record(name).node

    def client_node(self, name: str) -> LabNode:
        node = self.node(name)
        return node if self.edge_link is None else replace(node, port=RELAY_PORT)

    def link_counters(self) -> dict[str, LinkCounters]:
        """Bytes through each node's edge link so far, per direction (needs an edge link)."""
        if self._relay_pid is None:
            raise LabError("this lab has no edge link")
        return read_counters(self.state_dir)

    @property
    def sites(self) -> dict[str, LabSite]:
        return {name: self.site(name) for name in self._sites}

    def site(self, name: str) -> LabSite:
        """The site with the names of its nodes now (add_node and remove_node change them)."""
        names = tuple(node.name for node in self.nodes if node.site == name)
        return replace(self._site_record(name).site, node_names=names)

    def bastion_logins(self, site: str) -> int:
        """Logins the site's bastion accepted so far (its sshd.log)."""
        return site_.bastion_logins(self._site_record(site).site)

    def bastion_channels(self, site: str) -> int:
        """direct-tcpip channels (one per node reached through it) the bastion opened so far."""
        return site_.bastion_channels(self._site_record(site).site)

    def bastion_host_key(self, site: str) -> str:
        """The bastion's ed25519 host key as an OpenSSH public key line."""
        key = nodes_.host_key_path(self._site_record(site).site.bastion_dir)
        return key.with_suffix(".pub").read_text().strip()

    def bastion_banner(self, site: str) -> str | None:
        """The bastion's SSH banner, read from this machine (through the veth), or None."""
        bastion = self._site_record(site).site.bastion_node
        return nodes_.read_banner(bastion.address, bastion.port, timeout=2.0)

    def ssh_command(self, name: str, *command: str, user: str = "root") -> list[str]:
        """argv for the system ssh client logging in to a node with the lab key, no known_hosts."""
        node = self.client_node(name)
        return [
            *("ssh", "-i", str(self.key_path), "-p", str(node.port)),
            *("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"),
            *("-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"),
            f"{user}@{node.address}",
            *command,
        ]

    def host_public_key(self, name: str, key_type: str = nodes_.HOST_KEY_TYPES[0]) -> str:
        """The node's host key of key_type as an OpenSSH public key line
        ("ssh-ed25519 AAAA... node-001")."""
        self._record(name)
        key = nodes_.host_key_path(self._node_dir(name), key_type)
        return key.with_suffix(".pub").read_text().strip()

    def exec(
        self, name: str, command: str | Sequence[str], stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the node's mount namespace (its /tmp, /var/lib/kubeedge)
        and network namespace (a site's, for a site node).

        A string runs through bash -c; a sequence is the argv itself.
        """
        holder_pid = self._record(name).holder_pid
        if holder_pid is None or not nodes_.is_holder(holder_pid, self._node_dir(name)):
            raise LabError(f"{name} is not running")
        argv = ["/bin/bash", "-c", command] if isinstance(command, str) else list(command)
        return subprocess.run(
            ["nsenter", f"--target={holder_pid}", "--mount", "--net", "--", *argv],
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def processes(self, name: str) -> dict[int, str]:
        """pid -> command line of every process inside the node's mount namespace but its holder.

        The lab shares this machine's pid namespace, so `ps` inside a node would list every
        process here; the node's own are those in its mount namespace.
        """
        namespace = Path(self.exec(name, ["readlink", "/proc/self/ns/mnt"]).stdout.strip())
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "ns" / "mnt").readlink() != namespace:
                    continue
                command_line = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                )
            except (OSError, UnicodeDecodeError):
                continue  # it exited meanwhile
            if command_line and not command_line.startswith(nodes_.HOLDER_TAG):
                found[int(entry.name)] = command_line
        return found

    def join_records(self, name: str) -> list[JoinRecord]:
        """What the fake keadm recorded on the node (empty when it never joined or was reset)."""
        log_text = self.exec(name, f"cat {JOIN_LOG} 2>/dev/null || true").stdout
        return parse_join_records(log_text)

    def when_file_grows(
        self, name: str, pattern: str, min_bytes: int, action: Callable[[], None]
    ) -> threading.Thread:
        """In the background (join the thread returned): once a file of the node matching the
        glob pattern (absolute) holds min_bytes, run action; give up after a minute.

        The node's files are read through /proc/PID/root of one of its processes, which sees
        its private mounts, so the poll costs no process start.
        """
        root = Path(f"/proc/{next(iter(self.processes(name)))}/root")

        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    found = list(root.glob(pattern.lstrip("/")))
                    if found and found[0].stat().st_size >= min_bytes:
                        action()
                        return
                except FileNotFoundError:
                    pass
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, name=f"watch-{name}")
        watcher.start()
        return watcher

    def forget_joins(self) -> None:
        """Make every node unjoined again, as `keadm reset` does, but keep the join records
        (tests compare their counts before and after)."""
        unjoin = ["rm", "-f", "--", EDGECORE_CONFIG]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda node: self.exec(node.name, unjoin), self.nodes))

    # Whole-lab operations.

    def up(
        self,
        nodes: int,
        arch_mix: bool = False,
        tmp_size_mb: int = DEFAULT_TMP_SIZE_MB,
        edge_link: EdgeLink | None = None,
        busybox_nodes: int = 0,
        *,
        sites: Mapping[str, int] | None = None,
    ) -> list[LabNode]:
        """Start `nodes` nodes (a lab already running in this state dir is stopped first).

        Returns once every node's sshd answers. arch_mix cycles x86_64, aarch64, armv7l.
        The last busybox_nodes nodes have BusyBox's head, stat and tar (node.Flavour).
        edge_link puts every node behind its own simulated link (the relay, see relay.py).
        sites ({"north": 3}) puts the LAST nodes, as many as the counts add up to, in network
        namespaces of their own behind a bastion each, in the sites' order (site.py); busybox
        nodes are picked independently, so a node can be both.

        Raises:
            LabError: a node or bastion did not come up; everything started is stopped again.
        """
        if self._records or self._sites:
            log.info("stopping the lab already recorded in %s", self.state_dir)
            self.down()
        sites = dict(sites or {})
        site_.validate_sites(sites, nodes)
        if sites and edge_link is not None:
            # The relay listens on this machine and connects to the nodes from here.
            raise LabError("a lab has an edge link or sites, not both")
        self._prepare_shared_files()
        placed = site_.site_of_each_node(nodes, sites)
        for index in range(nodes):
            arch = ARCH_CYCLE[index % len(ARCH_CYCLE)] if arch_mix else ARCH_CYCLE[0]
            flavour: Flavour = "busybox" if index >= nodes - busybox_nodes else "coreutils"
            self._add_record(index, arch, tmp_size_mb, flavour, placed[index])
        for site_index, name in enumerate(sites):
            site = site_.plan_site(self.subnet, site_index, name, self.state_dir)
            self._sites[name] = SiteRecord(site)
        try:
            for name in self._sites:
                self._start_site(name)
            self._start(list(self._records))
            self.edge_link = edge_link
            if edge_link is not None:
                self._start_relay(edge_link)
        except BaseException:
            self.down()
            raise
        return self.nodes

    def down(self) -> None:
        """Stop every node: sshd, its sessions, anything else in the node, then the holder;
        then the sites' bastions, veth pairs and network namespaces. Safe after a failed up.

        Raises:
            LabError: a site's veth or namespace could not be removed (it stays recorded).
        """
        self._stop_relay()
        self.edge_link = None
        self._stop(list(self._records))
        self._records.clear()
        self._stop_bastions(list(self._sites))
        failures = []
        for record in self._sites.values():
            try:
                site_.remove_network(record)
            except site_.SiteError as error:
                failures.append(str(error))
        if failures:
            self._save()
            raise LabError(f"could not remove the lab's sites: {'; '.join(failures)}")
        self._sites.clear()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def status(self) -> list[NodeStatus]:
        """Which nodes answer right now: a TCP connect and an SSH banner per node, in parallel
        (a site node's from inside its site's network namespace)."""
        nodes = self.nodes
        with ThreadPoolExecutor(max_workers=min(64, len(nodes) or 1)) as pool:
            banners = pool.map(lambda node: self._read_banner(node, timeout=2.0), nodes)
            return [NodeStatus(node, banner) for node, banner in zip(nodes, banners, strict=True)]

    def write_inventory(self, path: Path, offline_package_dir: Path) -> Path:
        """Write the upstream-format batch config for these nodes (see inventory.py)."""
        self.inventory_path = write_lab_inventory(
            path,
            self.client_nodes,
            key_path=self.key_path,
            copy_from_dir=self.state_dir / "copy-from",
            offline_package_dir=offline_package_dir,
            bastions={
                name: (record.site.bastion_address, record.site.bastion_port)
                for name, record in self._sites.items()
            },
        )
        return self.inventory_path

    # Single-node operations, for fault tests.

    def add_node(
        self,
        arch: str = ARCH_CYCLE[0],
        tmp_size_mb: int | None = None,
        flavour: Flavour = "coreutils",
        site: str | None = None,
    ) -> LabNode:
        """Start one more node (the next name and address), e.g. with a tiny /tmp; in one of
        the lab's sites when `site` names one."""
        if arch not in ARCH_CYCLE:
            raise ValueError(f"arch must be one of {ARCH_CYCLE}, not {arch!r}")
        if site is not None:
            self._site_record(site)
        if not self._records:
            self._prepare_shared_files()
        index = max((int(name.split("-")[1]) for name in self._records), default=0)
        node = self._add_record(index, arch, tmp_size_mb or DEFAULT_TMP_SIZE_MB, flavour, site)
        try:
            self._start([node.name])
            if self.edge_link is not None:  # the relay learns its routes when it starts
                self._stop_relay()
                self._start_relay(self.edge_link)
        except BaseException:
            self.remove_node(node.name)
            raise
        return node

    def remove_node(self, name: str) -> None:
        """Stop the node entirely (its files are gone with its namespace)."""
        self._stop([name])
        del self._records[name]
        self._save()

    def stop_sshd(self, name: str, signal_number: signal.Signals = signal.SIGTERM) -> None:
        """Kill only the node's sshd listener: the node keeps its files, nothing answers on :22."""
        record = self._record(name)
        if record.sshd_pid is not None and nodes_.is_sshd(record.sshd_pid, self._node_dir(name)):
            os.kill(record.sshd_pid, signal_number)
            nodes_.terminate([record.sshd_pid], self._children)
        record.sshd_pid = None
        self._save()

    def cut_sessions(self, name: str) -> int:
        """Kill the node's SSH sessions (each connection's sshd processes and what they run),
        not its listener: connections to it drop as on a cut link; new ones are still taken.
        Returns how many processes were killed.

        The sessions are stopped first, so none forks (a privileged sshd forks its
        unprivileged one as the login completes) while their descendants are gathered.
        """
        listener = self._record(name).sshd_pid
        running = self.processes(name)
        doomed = {
            pid
            for pid, command in running.items()
            if pid != listener and command.startswith("sshd: ")
        }
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        parents = {pid: _parent_pid(pid) for pid in self.processes(name)}
        while grown := {pid for pid, parent in parents.items() if parent in doomed} - doomed:
            doomed |= grown
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(doomed)

    def start_sshd(self, name: str) -> None:
        """Start the node's sshd again (after stop_sshd or rotate_host_key) and wait for it."""
        record = self._record(name)
        if record.holder_pid is None:
            raise LabError(f"{name} has no namespace; use add_node for a new node")
        nodes_.prepare_node_dir(self._node_dir(name), record.node)
        sshd = nodes_.start_sshd(record.holder_pid, self._node_dir(name))
        self._children[sshd.pid] = sshd
        record.sshd_pid = sshd.pid
        self._save()
        self._wait_for_banners([name])

    def restart_sshd(self, name: str) -> None:
        self.stop_sshd(name)
        self.start_sshd(name)

    def stop_bastion(self, site: str, signal_number: signal.Signals = signal.SIGTERM) -> None:
        """Kill only the site's bastion listener: its nodes run on, unreachable from here."""
        record = self._site_record(site)
        bastion_dir = record.site.bastion_dir
        if record.sshd_pid is not None and nodes_.is_sshd(record.sshd_pid, bastion_dir):
            os.kill(record.sshd_pid, signal_number)
            nodes_.terminate([record.sshd_pid], self._children)
        record.sshd_pid = None
        self._save()

    def start_bastion(self, site: str) -> None:
        """Start the site's bastion listener again (after stop_bastion) and wait for it."""
        record = self._site_record(site)
        if record.holder_pid is None:
            raise LabError(f"site {site} has no bastion namespace; bring the lab up again")
        self._start_bastion_sshd(record)

    def freeze(self, name: str) -> None:
        """SIGSTOP the node's sshd: connects still succeed (kernel backlog) but no banner comes."""
        self._signal_sshd(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self._signal_sshd(name, signal.SIGCONT)

    def rotate_host_key(self, name: str) -> str:
        """Give the node a new host key and restart its sshd; returns the new public key line."""
        self.stop_sshd(name)
        key = nodes_.host_key_path(self._node_dir(name))
        key.unlink()
        key.with_suffix(".pub").unlink()
        self.start_sshd(name)
        return self.host_public_key(name)

    def add_host_key(self, name: str, key_type: str) -> str:
        """Give the node a host key of another type (ecdsa, rsa) beside its ed25519 one and
        restart its sshd; returns the new public key line."""
        self.stop_sshd(name)
        nodes_.add_host_key(self._node_dir(name), key_type, comment=name)
        self.start_sshd(name)
        return self.host_public_key(name, key_type)

    # Internals.

    def _prepare_shared_files(self) -> None:
        """The host's mount points, the lab logins and the uname wrappers every node uses."""
        prepare_host()
        self.accounts.prepare()
        nodes_.write_wrappers(self.state_dir)

    def _add_record(
        self, index: int, arch: str, tmp_size_mb: int, flavour: Flavour, site: str | None = None
    ) -> LabNode:
        address = node_address(self.subnet, index)
        node = LabNode(nodes_.node_name(index), address, SSH_PORT, arch, tmp_size_mb, flavour, site)
        self._records[node.name] = _NodeProcesses(node)
        return node

    def _start_site(self, name: str) -> None:
        """The site's namespace and veth, then its bastion (holder and sshd)."""
        record = self._sites[name]
        try:
            site_.create_network(record, on_progress=self._save)
        except site_.SiteError as error:
            raise LabError(str(error)) from None
        site = record.site
        nodes_.prepare_node_dir(site.bastion_dir, site.bastion_node, site_.BASTION_SSHD_OPTIONS)
        holder = nodes_.start_holder(
            self.state_dir, site.bastion_dir, site.bastion_node, site.netns_path
        )
        self._children[holder.pid] = holder
        record.holder_pid = holder.pid
        self._save()
        nodes_.wait_holder_ready(holder, site.bastion_dir)
        self._start_bastion_sshd(record)

    def _start_bastion_sshd(self, record: SiteRecord) -> None:
        site = record.site
        assert record.holder_pid is not None  # started by _start_site
        nodes_.prepare_node_dir(site.bastion_dir, site.bastion_node, site_.BASTION_SSHD_OPTIONS)
        sshd = nodes_.start_sshd(record.holder_pid, site.bastion_dir)
        self._children[sshd.pid] = sshd
        record.sshd_pid = sshd.pid
        self._save()
        self._wait_for([(site.bastion_node, site.bastion_dir, sshd.pid)])

    def _stop_bastions(self, names: list[str]) -> None:
        records = [self._sites[name] for name in names]
        self._stop_processes(
            [(record.holder_pid, record.sshd_pid, record.site.bastion_dir) for record in records]
        )
        for record in records:
            record.holder_pid = record.sshd_pid = None

    def _start(self, names: list[str]) -> None:
        # Another lab's sshd on our address would answer our banner check in our sshd's place.
        taken = [
            f"{node.address}:{node.port}"
            for node in (self._records[name].node for name in names)
            if address_in_use(node.address, node.port)
        ]
        if taken:
            raise LabError(f"already in use (another lab?): {', '.join(taken[:5])}")
        for name in names:
            nodes_.prepare_node_dir(self._node_dir(name), self._records[name].node)
        holders = {}
        for name in names:
            node = self._records[name].node
            netns = self._site_record(node.site).site.netns_path if node.site else None
            holder = nodes_.start_holder(self.state_dir, self._node_dir(name), node, netns)
            self._children[holder.pid] = holder
            self._records[name].holder_pid = holder.pid
            holders[name] = holder
        self._save()
        for name, holder in holders.items():
            nodes_.wait_holder_ready(holder, self._node_dir(name))
        for name, holder in holders.items():
            sshd = nodes_.start_sshd(holder.pid, self._node_dir(name))
            self._children[sshd.pid] = sshd
            self._records[name].sshd_pid = sshd.pid
        self._save()
        self._wait_for_banners(names)

    def _start_relay(self, edge_link: EdgeLink) -> None:
        routes = [
            Route(node.name, (node.address, RELAY_PORT), (node.address, node.port))
            for node in self.nodes
        ]
        relay, _ = start_relay(self.state_dir, routes, edge_link)
        self._children[relay.pid] = relay
        self._relay_pid = relay.pid
        self._save()

    def _stop_relay(self) -> None:
        if self._relay_pid is not None and is_relay(self._relay_pid, self.state_dir):
            nodes_.terminate([self._relay_pid], self._children)
        self._relay_pid = None

    def _read_banner(self, node: LabNode, timeout: float) -> str | None:
        if node.site is None:
            return nodes_.read_banner(node.address, node.port, timeout)
        connect = site_.netns_connector(self._site_record(node.site).site.netns)
        return nodes_.read_banner(node.address, node.port, timeout, connect)

    def _wait_for_banners(self, names: list[str]) -> None:
        self._wait_for(
            [
                (self._records[name].node, self._node_dir(name), self._records[name].sshd_pid)
                for name in names
            ]
        )

    def _wait_for(self, servers: list[tuple[LabNode, Path, int | None]]) -> None:
        """Wait until each (node, its dir, its sshd pid) answers with an SSH banner."""
        deadline = time.monotonic() + _BANNER_WAIT_SECONDS

        def wait_for(server: tuple[LabNode, Path, int | None]) -> bool:
            node, _, sshd_pid = server
            sshd = self._children.get(sshd_pid or 0)
            while time.monotonic() < deadline:
                if sshd is not None and sshd.poll() is not None:
                    return False  # it exited: a config or bind error, see its log
                if self._read_banner(node, timeout=1.0) is not None:
                    return True
                time.sleep(0.05)
            return False

        with ThreadPoolExecutor(max_workers=min(64, len(servers))) as pool:
            answers = pool.map(wait_for, servers)
            silent = [server for server, ok in zip(servers, answers, strict=True) if not ok]
        if silent:
            names = [node.name for node, _, _ in silent]
            logs = "; ".join(
                f"{node.name}: {_tail(node_dir / 'sshd.log')}" for node, node_dir, _ in silent[:3]
            )
            raise LabError(f"{len(silent)} node(s) did not answer: {', '.join(names)} ({logs})")

    def _stop(self, names: list[str]) -> None:
        records = [self._record(name) for name in names]
        self._stop_processes(
            [
                (record.holder_pid, record.sshd_pid, self._node_dir(record.node.name))
                for record in records
            ]
        )
        for record in records:
            record.sshd_pid = record.holder_pid = None

    def _stop_processes(self, servers: list[tuple[int | None, int | None, Path]]) -> None:
        """Stop each (holder pid, sshd pid, node dir): sshd, all in the holder's namespace, then
        the holder; a recorded pid that is no longer that process is left alone."""
        holders, inside = [], []
        for holder_pid, sshd_pid, node_dir in servers:
            if sshd_pid is not None and (
                nodes_.is_sshd(sshd_pid, node_dir) or self._running_child(sshd_pid)
            ):
                inside.append(sshd_pid)
            if holder_pid is not None and nodes_.is_holder(holder_pid, node_dir):
                holders.append(holder_pid)
                inside.extend(nodes_.namespace_members(holder_pid))
            elif holder_pid is not None and self._running_child(holder_pid):
                # Still setting up (an up that failed or was interrupted): its mount namespace
                # may not be its own yet, so only the holder itself is stopped.
                holders.append(holder_pid)
        # The holder last: while it lives, everything that entered its namespace can be found.
        nodes_.terminate(set(inside), self._children)
        nodes_.terminate(holders, self._children)

    def _running_child(self, pid: int) -> bool:
        """pid is a process this Lab started and has not reaped (so not a reused pid)."""
        child = self._children.get(pid)
        return child is not None and child.poll() is None

    def _signal_sshd(self, name: str, signal_number: signal.Signals) -> None:
        record = self._record(name)
        if record.sshd_pid is None or not nodes_.is_sshd(record.sshd_pid, self._node_dir(name)):
            raise LabError(f"{name}: sshd is not running")
        os.kill(record.sshd_pid, signal_number)

    def _record(self, name: str) -> _NodeProcesses:
        try:
            return self._records[name]
        except KeyError:
            raise LabError(f"no node {name!r} in the lab at {self.state_dir}") from None

    def _site_record(self, name: str) -> SiteRecord:
        try:
            return self._sites[name]
        except KeyError:
            raise LabError(f"no site {name!r} in the lab at {self.state_dir}") from None

    def _node_dir(self, name: str) -> Path:
        return self.state_dir / "nodes" / name

    def _save(self) -> None:
        state = {
            "subnet": self.subnet,
            "edge_link": asdict(self.edge_link) if self.edge_link else None,
            "relay_pid": self._relay_pid,
            "nodes": [
                {
                    **asdict(record.node),
                    "holder_pid": record.holder_pid,
                    "sshd_pid": record.sshd_pid,
                }
                for record in self._records.values()
            ],
            "sites": [record.to_state() for record in self._sites.values()],
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        partial = self.state_dir / f"{STATE_FILE}.partial"
        partial.write_text(json.dumps(state, indent=1) + "\n")
        partial.replace(self.state_dir / STATE_FILE)

    def _load(self) -> str | None:
        path = self.state_dir / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        for entry in state["nodes"]:
            holder_pid, sshd_pid = entry.pop("holder_pid"), entry.pop("sshd_pid")
            node = LabNode(**entry)
            self._records[node.name] = _NodeProcesses(node, holder_pid, sshd_pid)
        if state.get("edge_link"):
            self.edge_link = EdgeLink(**state["edge_link"])
        self._relay_pid = state.get("relay_pid")
        for entry in state.get("sites", []):
            record = SiteRecord.from_state(entry)
            self._sites[record.site.name] = record
        subnet: str = state["subnet"]
        return subnet


def _parent_pid(pid: int) -> int | None:
    try:
        # The field after the command's parenthesised name (which may hold spaces): state, ppid.
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _tail(log_file: Path) -> str:
    try:
        lines = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


class LabFactory(Protocol):
    """The `make_lab` fixture: starts a small lab of its own (own state dir and subnet)."""

    def __call__(
        self,
        nodes: int = 1,
        arch_mix: bool = False,
        tmp_size_mb: int = DEFAULT_TMP_SIZE_MB,
        *,
        busybox_nodes: int = 0,
        sites: Mapping[str, int] | None = None,
        edge_link: EdgeLink | None = None,
    ) -> Lab: ...
